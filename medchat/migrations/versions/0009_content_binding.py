"""Content binding: each conversation records the associated-data format of its content.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 10:00:00

Format 2 binds a message body to its sequence number and author and an attachment to its
message (``medchat.keys.sealing``). Existing conversations are format 1: their key-set tags were
made with version 1, which is what ``conversations.content_version`` now feeds the tag, so
they keep verifying and opening unchanged; no row is rewritten and no server key is needed.
``medchat keys reseal-content`` moves them to format 2 later, with a clinician's keys (this
migration cannot: nothing on the server opens a DEK). The default of 1 is added with the
column (instant on PostgreSQL 11+, no table copy on SQLite).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        'conversations',
        sa.Column('content_version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    )


def downgrade() -> None:
    # The previous release tags every key set as version 1: a format-2 conversation would be
    # refused by it, so going back is refused while any exists.
    bound = op.get_bind().execute(
        sa.text('SELECT COUNT(*) FROM conversations WHERE content_version <> 1')
    ).scalar_one()
    if bound:
        raise RuntimeError(
            f'{bound} conversations use content format 2, which the previous release cannot '
            'read; restore a backup taken before this upgrade instead'
        )
    # A plain DROP COLUMN (SQLite 3.35+), not a batch table copy: rebuilding ``conversations``
    # with foreign keys on would cascade its DROP TABLE to every message and wrap.
    op.drop_column('conversations', 'content_version')
