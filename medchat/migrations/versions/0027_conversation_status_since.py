"""A conversation keeps when it entered its status; the clinicians' lists are ordered on it.

The open queue was ordered on ``last_message_at``: a member who added a second message before
any answer went to the back of the queue, behind everyone who asked after them. And since
``ix_conversations_status_last`` held ``last_message_at``, which every send moves, every send's
conversation update was a non-HOT one: a new entry in each of the table's four live indexes
(and, at scale, up to four index pages written whole to the WAL after each checkpoint).

``status_since`` is when the conversation entered its status: for an open one since when the
member has waited, for an answered one when it was answered, for a closed or sealed one when
it was closed or sealed. A send that keeps the status keeps it, so the index on (status,
status_since, id) that replaces the old one leaves a send's update heap-only (with a tenth of
each of the table's pages left free for it on PostgreSQL: ``fillfactor`` 90). Existing rows
get it from their messages: an open conversation's first member message after the last
answer, an answered one's first answer after the member's last message, ``closed_at`` and
``sealed_at``; ``last_message_at`` where a conversation has no such message.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07 02:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medchat.db

revision = '0027'
down_revision = '0026'
branch_labels = None
depends_on = None

_BACKFILL = """
UPDATE conversations SET status_since = COALESCE(
    CASE status
        WHEN 'open' THEN (
            SELECT min(m.created_at) FROM messages m
            WHERE m.conversation_id = conversations.id AND m.seq > COALESCE((
                SELECT max(a.seq) FROM messages a
                WHERE a.conversation_id = conversations.id AND a.author_role = 'clinician'
            ), 0)
        )
        WHEN 'answered' THEN (
            SELECT min(m.created_at) FROM messages m
            WHERE m.conversation_id = conversations.id AND m.author_role = 'clinician'
            AND m.seq > COALESCE((
                SELECT max(q.seq) FROM messages q
                WHERE q.conversation_id = conversations.id AND q.author_role = 'member'
            ), 0)
        )
        WHEN 'closed' THEN closed_at
        WHEN 'sealed' THEN sealed_at
    END,
    last_message_at
)
"""

_COLUMN = 'status_since'
#: SQLite adds a NOT NULL column only with a constant default; every writer sets the column
#: (PostgreSQL, which keeps no default, holds them to it), so the default is only ever seen by
#: the rows the backfill below dates at once.
_SQLITE_ADD = (
    "ALTER TABLE conversations ADD COLUMN status_since DATETIME NOT NULL"
    " DEFAULT '1970-01-01 00:00:00.000000'"
)


def upgrade() -> None:
    # Never a batch rebuild of ``conversations`` on SQLite: its DROP TABLE would cascade to
    # every message, wrap and attachment (foreign keys are on; 0020 does the same).
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        op.execute(sa.text(_SQLITE_ADD))
    else:
        op.add_column(
            'conversations',
            sa.Column(_COLUMN, medchat.db.UtcDateTime(timezone=True), nullable=True),
        )
    op.execute(_BACKFILL)
    if not sqlite:
        op.alter_column(
            'conversations',
            _COLUMN,
            existing_type=medchat.db.UtcDateTime(timezone=True),
            nullable=False,
        )
    op.drop_index('ix_conversations_status_last', table_name='conversations')
    op.create_index(
        'ix_conversations_status_since', 'conversations', ['status', _COLUMN, 'id'], unique=False
    )
    if not sqlite:
        # A tenth of each page left free, so a send's update of a row finds room for its new
        # version in the row's own page, which a heap-only update needs (pages written from
        # now on; existing ones gain room as old versions are pruned).
        op.execute(sa.text('ALTER TABLE conversations SET (fillfactor = 90)'))


def downgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        op.execute(sa.text('ALTER TABLE conversations RESET (fillfactor)'))
    op.drop_index('ix_conversations_status_since', table_name='conversations')
    op.create_index(
        'ix_conversations_status_last',
        'conversations',
        ['status', 'last_message_at', 'id'],
        unique=False,
    )
    # SQLite: its own DROP COLUMN (3.35+), never a batch rebuild (above).
    op.execute(sa.text(f'ALTER TABLE conversations DROP COLUMN {_COLUMN}'))
