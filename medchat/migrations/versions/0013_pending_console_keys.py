"""Console sign-in opens no key before the second factor: pending sessions hold no keyring.

From this release the console's password step stores a pending session row without any key
material (``medchat.identity.console_sessions``); the keys are opened at the TOTP step. Pending
rows written by the release before hold a sealed keyring: they are deleted here, so no key
material waits in the database for a code that may never come. A clinician halfway through
signing in at the moment of the upgrade (a five-minute window) types the password again.

Nothing else is rewritten; password hashes and sealed personal keys of the older format are
replaced at each account's next sign-in (``docs/security.md``, "Password hashes").

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-20 10:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = '0013'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM auth_tokens WHERE kind = 'console_pending'")


def downgrade() -> None:
    # The release before promotes only pending rows holding a keyring: signing in again
    # (after this downgrade) writes those. The rows this release wrote are deleted so that
    # none is promoted into a session without keys.
    op.execute("DELETE FROM auth_tokens WHERE kind = 'console_pending'")
