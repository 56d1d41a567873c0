"""Retention: indexes that find due conversations and a conversation's idempotency records.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 18:40:00

``medchat retention run`` walks live conversations by question time and sealed ones by
sealing time, in batches, on partial indexes that hold only the rows of that state (so the
destroyed and the sealed never have to be stepped over). Destroying or sealing a conversation
forgets its ``Idempotency-Key`` records by scope; without an index that scanned the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

LIVE = sa.text("status <> 'sealed'")
SEALED = sa.text("status = 'sealed'")


def upgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.create_index(
            'ix_conversations_live_created_at', ['created_at', 'id'], unique=False,
            postgresql_where=LIVE, sqlite_where=LIVE,
        )
        batch_op.create_index(
            'ix_conversations_sealed_sealed_at', ['sealed_at', 'id'], unique=False,
            postgresql_where=SEALED, sqlite_where=SEALED,
        )
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.create_index(
            'ix_idempotency_records_scope_resource', ['scope', 'resource_id'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.drop_index('ix_idempotency_records_scope_resource')
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index('ix_conversations_sealed_sealed_at')
        batch_op.drop_index('ix_conversations_live_created_at')
