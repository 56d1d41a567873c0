"""Member rights: the access log pages a member's audit entries by (subject_id, seq).

``GET /api/v1/me/access-log`` reads the entries naming one member, newest first, in keyset
pages on the sequence number; with this index a page is one backward range scan whatever the
length of the trail (the single-column ``subject_id`` index made PostgreSQL fetch and sort
every entry of the member for each page).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 18:40:00.000000
"""

from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain CREATE INDEX on both backends: no batch (table copy) near the append-only audit.
    op.create_index('ix_audit_entries_subject_seq', 'audit_entries', ['subject_id', 'seq'])


def downgrade() -> None:
    op.drop_index('ix_audit_entries_subject_seq', table_name='audit_entries')
