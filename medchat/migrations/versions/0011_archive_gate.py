"""The archive gate: live conversations' archive wraps go behind the server's gate key.

SECURITY-MODEL key hierarchy 10, "the archive key opens only sealed records". From this
revision on, a conversation that is not sealed keeps its archive wrap gated
(``medchat.archive.gate``: holder ``archive_gated``, the HPKE wrap sealed again under a key
derived from ``archive-gate.key``). This migration gates the archive wraps that existing live
conversations hold in the plain form; sealed conversations keep theirs plain. No schema change.

Gating needs only the server's gate key, never a DEK or a role key, so ``medchat db upgrade``
does it on its own (``medchat.storage.migrate.migration_server_keys``); a database without such rows
(a fresh install, the test suite) needs no keys. Idempotent: a gated wrap is no longer an
``archive`` row, so a second run finds nothing to do. Rows are rewritten in batches by id.

The downgrade lifts every gate again (the code before this revision reads archive wraps as
plain ones and would leave gated ones behind in a rotation), with the same keys. A gate that
does not open (altered in the database) is left as it is, and named in the log.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 10:00:00.000000
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from medchat.archive.gate import GATED, ArchiveGate
from medchat.errors import KeyIntegrityFailure
from medchat.storage.migrate import migration_server_keys

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

ARCHIVE = "archive"
BATCH = 1000
log = logging.getLogger("alembic.runtime.migration")

_wraps = sa.table(
    "conversation_key_wraps",
    sa.column("id", sa.Uuid()),
    sa.column("conversation_id", sa.Uuid()),
    sa.column("holder", sa.String(16)),
    sa.column("recipient_key_id", sa.LargeBinary()),
    sa.column("wrap", sa.LargeBinary()),
)
_conversations = sa.table(
    "conversations", sa.column("id", sa.Uuid()), sa.column("status", sa.String(16))
)
#: ``(gate, wrap, conversation id, recipient key id) -> rewritten wrap``
Rewrite = Callable[[ArchiveGate, bytes, uuid.UUID, bytes], bytes]


def _rewrite(where: sa.ColumnElement[bool], holder: str, rewrite: Rewrite, purpose: str) -> None:
    """Give every wrap ``where`` selects the new ``holder`` and ``rewrite``'s bytes."""
    bind = op.get_bind()
    query = (
        sa.select(_wraps.c.id, _wraps.c.conversation_id, _wraps.c.recipient_key_id, _wraps.c.wrap)
        .where(where)
        .order_by(_wraps.c.id)
        .limit(BATCH)
    )
    rows = bind.execute(query).all()
    if not rows:
        return  # nothing to rewrite: no keys needed
    gate = ArchiveGate(migration_server_keys(purpose).archive_gate)
    update = (
        sa.update(_wraps)
        .where(_wraps.c.id == sa.bindparam("row_id"))
        .values(holder=holder, wrap=sa.bindparam("new_wrap"))
    )
    while rows:
        changes = []
        for row in rows:
            try:
                new = rewrite(gate, row.wrap, row.conversation_id, row.recipient_key_id)
            except KeyIntegrityFailure:
                log.error("conversation %s: its archive gate does not open", row.conversation_id)
                continue
            changes.append({"row_id": row.id, "new_wrap": new})
        if changes:
            bind.execute(update, changes)
        rows = bind.execute(query.where(_wraps.c.id > rows[-1].id)).all()


def _close(gate: ArchiveGate, wrap: bytes, conversation_id: uuid.UUID, key_id: bytes) -> bytes:
    return gate.close(wrap, conversation_id=conversation_id, recipient_key_id=key_id)


def _open(gate: ArchiveGate, wrap: bytes, conversation_id: uuid.UUID, key_id: bytes) -> bytes:
    return gate.open(wrap, conversation_id=conversation_id, recipient_key_id=key_id)


def upgrade() -> None:
    live = sa.select(_conversations.c.id).where(_conversations.c.status != "sealed")
    _rewrite(
        sa.and_(_wraps.c.holder == ARCHIVE, _wraps.c.conversation_id.in_(live)),
        GATED,
        _close,
        "gates the archive wraps of live conversations",
    )


def downgrade() -> None:
    _rewrite(_wraps.c.holder == GATED, ARCHIVE, _open, "lifts the archive gates")
