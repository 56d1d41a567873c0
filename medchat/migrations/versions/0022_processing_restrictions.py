"""Restriction of processing and objection (issue 16, item 6): ``processing_restrictions``.

One row per restriction a member asked for (or that an objection began), kept after it is
lifted; the row is tagged (``row_tag``), since it changes what the server does.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 22:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medchat.db

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('processing_restrictions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('ground', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=16), nullable=False),
    sa.Column('ticket', sa.String(length=64), nullable=True),
    sa.Column('restricted_at', medchat.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('lifted_at', medchat.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('lifted_by', sa.String(length=16), nullable=True),
    sa.Column('row_tag', sa.LargeBinary(length=32), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_processing_restrictions_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_processing_restrictions'))
    )
    with op.batch_alter_table('processing_restrictions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_processing_restrictions_account_id'), ['account_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('processing_restrictions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_processing_restrictions_account_id'))
    op.drop_table('processing_restrictions')
