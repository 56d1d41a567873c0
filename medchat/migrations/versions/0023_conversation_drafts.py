"""Clinicians' drafts (issue 17, item 5): one sealed, unsent answer per author and conversation.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 23:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medchat.db

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'conversation_drafts',
        sa.Column('conversation_id', sa.Uuid(), nullable=False),
        sa.Column('author_id', sa.Uuid(), nullable=False),
        sa.Column('body', sa.LargeBinary(), nullable=False),
        sa.Column('updated_at', medchat.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['author_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('conversation_id', 'author_id'),
    )


def downgrade() -> None:
    op.drop_table('conversation_drafts')
