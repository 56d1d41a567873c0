"""Clinicians' canned replies (issue 17, item 5): sealed under a key of their owner's session.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04 23:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medchat.db

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'reply_templates',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('owner_id', sa.Uuid(), nullable=False),
        sa.Column('personal_key_id', sa.Uuid(), nullable=False),
        sa.Column('title', sa.LargeBinary(), nullable=False),
        sa.Column('body', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', medchat.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', medchat.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['owner_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_reply_templates_owner_id', 'reply_templates', ['owner_id'])


def downgrade() -> None:
    op.drop_index('ix_reply_templates_owner_id', table_name='reply_templates')
    op.drop_table('reply_templates')
