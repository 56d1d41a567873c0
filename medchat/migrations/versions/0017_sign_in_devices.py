"""Sign-ins and devices (issue 17, item 6): what a token family shows its owner.

Two nullable columns on ``auth_tokens``, copied to each pair a refresh issues:

- ``device``: a short label from a fixed vocabulary ("Firefox on Linux"), made from the
  User-Agent at sign-in; never the User-Agent itself.
- ``network``: a keyed MAC of the sign-in address's network (/24 or /48), so the list can say
  "same network as now" without storing an address.

Neither decides anything (``GET /api/v1/auth/sessions`` only shows them), so neither is
covered by the row tag. Existing rows get neither: their sign-ins show no device.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-30 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('auth_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('device', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('network', sa.LargeBinary(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('auth_tokens', schema=None) as batch_op:
        batch_op.drop_column('network')
        batch_op.drop_column('device')
