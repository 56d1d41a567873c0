"""No index that another one already serves: each cost every write of its table.

An index whose columns lead another index or unique constraint of the same table serves no
lookup the other does not (``tests/unit/test_indexes.py`` keeps it so for every table). Four
such were written on every insert: ``audit_entries.subject_id`` (every audit entry, so every
write of the service; ``ix_audit_entries_subject_seq`` serves a member's access log),
``conversation_key_wraps.conversation_id`` (three wraps per conversation and key epoch),
``role_key_grants.role_key_id`` and ``rewrap_requests.conversation_id`` (each led by its
table's unique constraint).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 16:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None

#: (index, table, column).
_DROPPED = (
    ('ix_audit_entries_subject_id', 'audit_entries', 'subject_id'),
    ('ix_conversation_key_wraps_conversation_id', 'conversation_key_wraps', 'conversation_id'),
    ('ix_role_key_grants_role_key_id', 'role_key_grants', 'role_key_id'),
    ('ix_rewrap_requests_conversation_id', 'rewrap_requests', 'conversation_id'),
)


def upgrade() -> None:
    for index, table, _column in _DROPPED:
        op.drop_index(index, table_name=table)


def downgrade() -> None:
    for index, table, column in _DROPPED:
        op.create_index(index, table, [column])
