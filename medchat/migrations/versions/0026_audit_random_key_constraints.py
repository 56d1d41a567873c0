"""The audit table keeps no index on a random value: two unique constraints dropped.

``audit_entries.id`` (a UUID4) and ``audit_entries.entry_hash`` (a SHA-256) each carried a
unique constraint, so every audit entry, written by every request that changes or reads
content, inserted a key into two B-trees at a random leaf. Nothing looks an entry up by
either (``verify`` walks a chain by ``seq``, anchors by chain and position, the access log by
subject and ``seq``), and neither constraint protects the log: the hash chain does (a copied
entry needs another ``seq`` or position, which its hash covers), and whoever can write the
database can drop a constraint. What they cost grows with the table: once an index is larger
than the buffers, each insert touches a page no other recent insert touched, and after every
checkpoint that page is written to the WAL whole. Measured on a 2,000,000-entry table from a
checkpoint: 12.0 KB of WAL per entry with the two, 5.0 KB without (``python -m
bench.wal_at_scale``; bench/README.md, "Past one database").

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 23:45:00.000000
"""

from __future__ import annotations

from alembic import op

revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None

#: (constraint, column).
_DROPPED = (
    ('uq_audit_entries_id', 'id'),
    ('uq_audit_entries_entry_hash', 'entry_hash'),
)


def upgrade() -> None:
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        for constraint, _column in _DROPPED:
            batch_op.drop_constraint(constraint, type_='unique')


def downgrade() -> None:
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        for constraint, column in _DROPPED:
            batch_op.create_unique_constraint(constraint, [column])
