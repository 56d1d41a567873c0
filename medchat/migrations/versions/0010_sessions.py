"""Sessions: the purge of expired token rows walks ``auth_tokens`` by expiry.

``medchat retention run`` (and every sign-in, for its own account) deletes expired token rows
(``medchat.services.token_purge``); this index makes each of its batches a range scan however
many live and spent rows the table holds.

No row is rewritten here. Session keyrings sealed before this release (format 1: a key derived
from the token alone) no longer open: the service treats those sessions as signed out, and the
purge deletes their rows, so an upgrade signs everyone out once (``docs/security.md``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 10:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f('ix_auth_tokens_expires_at'), 'auth_tokens', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_auth_tokens_expires_at'), table_name='auth_tokens')
