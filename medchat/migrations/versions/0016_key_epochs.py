"""Key epochs: a conversation's DEK changes when a reader loses access (issue 18, item 2).

Schema only, nothing rewritten, no key needed (``docs/security.md``, "Key epochs"):

- ``conversation_key_wraps.epoch``, 1 for every existing wrap (a constant default: instant on
  PostgreSQL 11+), and the wraps' unique key gains it, since each epoch has its own wraps;
- ``conversation_key_epochs``: one tagged row per epoch (``medchat.models.epochs``). Existing
  conversations get none here: their epoch 1 is their conversation row (commitment and
  key-set tag, as before) until ``medchat keys migrate-epochs`` writes the rows, in batches,
  resumable, while the service runs. Until then and after, their epoch 1 counts as begun
  before every event, so each starts epoch 2 at its next seal;
- ``key_reader_removals``: holders who lost a role key (counted, ``KeyCustody``).

The new unique constraint on the wraps builds an index: on PostgreSQL the wraps table is
locked for writes while it builds (seconds per million wraps; reads go on). Wraps are written
by new conversations, rotations and re-wraps only, never by a message.

The downgrade is refused while any conversation has a second epoch: the release before reads
one DEK per conversation and would refuse (or mis-seal) everything written since.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-28 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medchat.db

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('conversation_key_epochs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('conversation_id', sa.Uuid(), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('key_commitment', sa.LargeBinary(length=32), nullable=False),
    sa.Column('member_key_id', sa.LargeBinary(length=8), nullable=True),
    sa.Column('physician_version', sa.Integer(), nullable=False),
    sa.Column('archive_version', sa.Integer(), nullable=False),
    sa.Column('removals', sa.Integer(), nullable=False),
    sa.Column('created_at', medchat.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('row_tag', sa.LargeBinary(length=32), nullable=True),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_conversation_key_epochs_conversation_id_conversations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversation_key_epochs')),
    sa.UniqueConstraint('conversation_id', 'epoch', name=op.f('uq_conversation_key_epochs_conversation_id'))
    )
    op.create_table('key_reader_removals',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('created_at', medchat.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_key_reader_removals'))
    )
    op.add_column(
        'conversation_key_wraps',
        sa.Column('epoch', sa.Integer(), server_default=sa.text('1'), nullable=False),
    )
    # SQLite copies the table to change a constraint (nothing references the wraps, so the
    # copy cascades nothing); PostgreSQL alters it in place.
    with op.batch_alter_table('conversation_key_wraps', schema=None) as batch_op:
        batch_op.drop_constraint('uq_conversation_key_wraps_conversation_id', type_='unique')
        batch_op.create_unique_constraint(
            batch_op.f('uq_conversation_key_wraps_conversation_id'),
            ['conversation_id', 'epoch', 'holder', 'recipient_key_id'],
        )


def downgrade() -> None:
    later = op.get_bind().execute(
        sa.text('SELECT COUNT(DISTINCT conversation_id) FROM conversation_key_wraps WHERE epoch <> 1')
    ).scalar_one()
    if later:
        raise RuntimeError(
            f'{later} conversations have a second key epoch, which the previous release cannot '
            'read; restore a backup taken before this upgrade instead'
        )
    with op.batch_alter_table('conversation_key_wraps', schema=None) as batch_op:
        batch_op.drop_constraint('uq_conversation_key_wraps_conversation_id', type_='unique')
        batch_op.create_unique_constraint(
            batch_op.f('uq_conversation_key_wraps_conversation_id'),
            ['conversation_id', 'holder', 'recipient_key_id'],
        )
        batch_op.drop_column('epoch')
    op.drop_table('key_reader_removals')
    op.drop_table('conversation_key_epochs')
