"""The care workflow (issue 17, items 2 to 4): claims on questions, urgency, the notice.

- ``conversation_claims``: who has a waiting question until when (tagged: a claim decides who
  may answer, ``medchat.models.claims``).
- ``conversations.urgent``: the member marked the question urgent (sorts first in the open
  queue; display and order only, nothing is handed to anyone).
- ``conversations.notice_version``: the version of the "not for emergencies" notice the member
  acknowledged when asking (NULL for questions asked before it existed).

Member read positions reuse ``conversation_reads`` (migration 0003): no change there.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 22:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medchat.db

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'conversation_claims',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('conversation_id', sa.Uuid(), nullable=False),
        sa.Column('clinician_id', sa.Uuid(), nullable=False),
        sa.Column('claimed_at', medchat.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', medchat.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column('handed_by', sa.Uuid(), nullable=True),
        sa.Column('reason', sa.String(length=32), nullable=True),
        sa.Column('row_tag', sa.LargeBinary(length=32), nullable=True),
        sa.ForeignKeyConstraint(['clinician_id'], ['accounts.id'], name=op.f('fk_conversation_claims_clinician_id_accounts'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_conversation_claims_conversation_id_conversations'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['handed_by'], ['accounts.id'], name=op.f('fk_conversation_claims_handed_by_accounts'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_conversation_claims')),
        sa.UniqueConstraint('conversation_id', name=op.f('uq_conversation_claims_conversation_id')),
    )
    op.create_index(op.f('ix_conversation_claims_clinician_id'), 'conversation_claims', ['clinician_id'], unique=False)
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('urgent', sa.Boolean(), server_default=sa.text('false'), nullable=False))
        batch_op.add_column(sa.Column('notice_version', sa.String(length=16), nullable=True))


def downgrade() -> None:
    # SQLite: its own DROP COLUMN (3.35+), never a batch rebuild of ``conversations``, whose
    # DROP TABLE would cascade to every message, wrap and attachment (foreign keys are on).
    for name in ('notice_version', 'urgent'):
        op.execute(sa.text(f'ALTER TABLE conversations DROP COLUMN {name}'))
    op.drop_index(op.f('ix_conversation_claims_clinician_id'), table_name='conversation_claims')
    op.drop_table('conversation_claims')
