"""Notifications that carry no health content (issue 17 item 1) and known sign-in devices.

Four new tables (``medchat.models.notifications``), every one tagged (``row_tag``) from its
first row, so nothing is backfilled and no keys are needed here:
``notification_outbox`` (what to send to whom by which channel, never content),
``push_subscriptions``, ``notification_preferences`` (a member's opt-in per channel) and
``known_devices`` (the device labels an account signed in from: a new one is mailed).

Revision ID: 0019
Revises: 0017
Create Date: 2026-12-31 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medchat.db

revision = '0019'
down_revision = '0017'
branch_labels = None
depends_on = None


def _account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ['account_id'], ['accounts.id'],
        name=op.f(f'fk_{table}_account_id_accounts'), ondelete='CASCADE',
    )


def upgrade() -> None:
    op.create_table('notification_outbox',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('ref_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', medchat.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', medchat.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', medchat.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('row_tag', sa.LargeBinary(length=32), nullable=True),
    _account_fk('notification_outbox'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_outbox')),
    sa.UniqueConstraint('event_id', 'channel', 'account_id', name='uq_notification_event'),
    )
    with op.batch_alter_table('notification_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_outbox_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_notification_due', ['delivered_at', 'next_attempt_at'], unique=False)

    op.create_table('push_subscriptions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('endpoint', sa.String(length=2048), nullable=False),
    sa.Column('p256dh', sa.LargeBinary(length=65), nullable=False),
    sa.Column('auth', sa.LargeBinary(length=16), nullable=False),
    sa.Column('created_at', medchat.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('row_tag', sa.LargeBinary(length=32), nullable=True),
    _account_fk('push_subscriptions'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_push_subscriptions')),
    )
    with op.batch_alter_table('push_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_push_subscriptions_account_id'), ['account_id'], unique=False)

    op.create_table('notification_preferences',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('updated_at', medchat.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('row_tag', sa.LargeBinary(length=32), nullable=True),
    _account_fk('notification_preferences'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_preferences')),
    sa.UniqueConstraint('account_id', 'channel', name='uq_notification_choice'),
    )

    op.create_table('known_devices',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('device', sa.String(length=64), nullable=False),
    sa.Column('first_seen_at', medchat.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('row_tag', sa.LargeBinary(length=32), nullable=True),
    _account_fk('known_devices'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_known_devices')),
    sa.UniqueConstraint('account_id', 'device', name='uq_known_device'),
    )


def downgrade() -> None:
    op.drop_table('known_devices')
    op.drop_table('notification_preferences')
    with op.batch_alter_table('push_subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_push_subscriptions_account_id'))
    op.drop_table('push_subscriptions')
    with op.batch_alter_table('notification_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_due')
        batch_op.drop_index(batch_op.f('ix_notification_outbox_account_id'))
    op.drop_table('notification_outbox')
