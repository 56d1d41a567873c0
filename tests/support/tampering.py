"""Writing the database as an attacker with SQL access does: raw statements, no service.

Statements go straight to ``runtime.database.engine``; the service learns of them only by
reading the rows later. Parameters are typed for the dialect (UUIDs and UTC times are stored
differently by SQLite and PostgreSQL) and nothing else is done for the attacker.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Uuid, bindparam, select, text

from access_control import crypto, hybrid_kem
from medchat.db import UtcDateTime
from medchat.models import ConversationKeyWrap, RoleKeyGrant
from medchat.services.context import ServiceContext


def execute_sql(runtime: ServiceContext, statement: str, **params: Any) -> int:
    """Run one statement in its own committed transaction; returns the rows it touched."""
    typed = [
        bindparam(name, type_=Uuid() if isinstance(value, uuid.UUID) else UtcDateTime())
        for name, value in params.items()
        if isinstance(value, (uuid.UUID, datetime))
    ]
    with runtime.database.engine.begin() as connection:
        result = connection.execute(text(statement).bindparams(*typed), params)
        return result.rowcount


def flipped(value: bytes | str) -> bytes | str:
    """Another value of the same type and length, never the value itself.

    Reversing or overwriting a last character is what a tampering test reaches for, and
    either can hand back what was there ("Chrome on Linux" already ends in "x"; a palindrome
    reverses to itself): the row is then never altered and the test proves nothing.
    """
    if isinstance(value, bytes):
        if not value:
            return b"\x01"
        changed = bytes(reversed(value))
        return changed if changed != value else bytes([value[0] ^ 0xFF]) + value[1:]
    if not value:
        return "x"
    return value[:-1] + ("x" if value[-1] != "x" else "y")


def sealed_to(runtime: ServiceContext, key_id: bytes) -> list[str]:
    """Every stored wrap or grant sealed to the public key named ``key_id``."""
    found = []
    with runtime.database.transaction() as session:
        for wrap in session.scalars(select(ConversationKeyWrap)):
            if wrap.recipient_key_id == key_id or _names(wrap.wrap, key_id):
                found.append(f"conversation {wrap.conversation_id} {wrap.holder} wrap")
        for grant in session.scalars(select(RoleKeyGrant)):
            if _names(grant.wrap, key_id):
                found.append(f"role key grant {grant.role_key_id} to {grant.account_id}")
    return found


def _names(wrap: bytes, key_id: bytes) -> bool:
    try:
        return hybrid_kem.wrap_key_id(wrap) == key_id
    except crypto.DecryptionFailed:
        return False


def retag_everything(runtime: ServiceContext) -> int:
    """Give every row of every tagged table a valid row tag, as someone who holds the
    integrity key as well as SQL access could: what the walls *behind* the row tags (pins,
    key tags, commitments, HPKE info) must still refuse. Returns the rows re-tagged."""
    from medchat.db import Base
    from medchat.models.integrity import integrity_of
    from medchat.storage.row_integrity import TAGGER

    tagger = runtime.database.info[TAGGER]
    count = 0
    with runtime.database.engine.begin() as connection:
        for mapper in Base.registry.mappers:
            spec = integrity_of(mapper.class_)
            if spec is None or spec.kind != "tagged":
                continue
            table = mapper.local_table
            for row in connection.execute(select(*(table.c[n] for n in spec.columns))):
                connection.execute(
                    table.update()
                    .where(table.c.id == row.id)
                    .values(row_tag=tagger.tag(table.name, list(row)))
                )
                count += 1
    return count
