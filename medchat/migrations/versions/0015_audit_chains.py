"""Audit chains: entries spread over several hash chains, so commits stop queueing on one lock.

``audit_entries`` gains ``chain`` (the head it was appended under), ``position`` (its place in
that chain) and ``format`` (1 for every entry written before: chain ``audit``, position = seq,
hashed as before; new entries are format 2). ``chain_heads`` gains the heads ``audit/1`` to
``audit/63`` at position 0, so every possible chain exists before any process appends to it
(``medchat.audit.chain.MAX_CHAINS``); ``verify`` requires all of them. On PostgreSQL the global
``seq`` comes from the sequence ``audit_entry_seq`` (taken under the chain's lock, without a
lock of its own), started after the highest existing entry.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 19:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

MAX_CHAINS = 64


def upgrade() -> None:
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain', sa.String(length=32), server_default='audit', nullable=False))
        batch_op.add_column(sa.Column('position', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('format', sa.SmallInteger(), server_default='1', nullable=False))
    op.execute("UPDATE audit_entries SET position = seq")
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.alter_column('position', existing_type=sa.BigInteger(), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_audit_entries_chain'), ['chain', 'position'])
        batch_op.create_index('ix_audit_entries_chain_seq', ['chain', 'seq'], unique=False)
    heads = sa.table(
        "chain_heads",
        sa.column("chain", sa.String),
        sa.column("seq", sa.BigInteger),
        sa.column("entry_hash", sa.LargeBinary),
        sa.column("mac", sa.LargeBinary),
    )
    op.bulk_insert(
        heads,
        [
            {"chain": f"audit/{n}", "seq": 0, "entry_hash": bytes(32), "mac": bytes(32)}
            for n in range(1, MAX_CHAINS)
        ],
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE audit_entry_seq")
        op.execute(
            "SELECT setval('audit_entry_seq', (SELECT coalesce(max(seq), 0) + 1 FROM audit_entries), false)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE audit_entry_seq")
    op.execute("DELETE FROM chain_heads WHERE chain LIKE 'audit/%'")
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_chain_seq')
        batch_op.drop_constraint(batch_op.f('uq_audit_entries_chain'), type_='unique')
        batch_op.drop_column('format')
        batch_op.drop_column('position')
        batch_op.drop_column('chain')
