"""E-mail correction: a member's pending new address waits, sealed, for its mailed token.

A new table, ``email_change_tokens`` (``medchat.models.lifecycle.EmailChangeToken``). It is
tagged (``row_tag``) from its first row, so unlike the tables of 0008 it has nothing to
backfill and needs no keys.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-21 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medchat.db

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('email_change_tokens',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('new_email_ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', medchat.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', medchat.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('used_at', medchat.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('row_tag', sa.LargeBinary(length=32), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_email_change_tokens_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_change_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_email_change_tokens_token_hash'))
    )
    with op.batch_alter_table('email_change_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_email_change_tokens_account_id'), ['account_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('email_change_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_change_tokens_account_id'))
    op.drop_table('email_change_tokens')
