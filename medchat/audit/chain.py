"""Every data change and every read of medical content is audited, and the log cannot be
rewritten unnoticed (SECURITY-MODEL "Audit").

Entries are recorded during a unit of work and appended when it commits, in the same
transaction: if the audit append fails the change is rolled back (audit fails closed), and a
rolled-back change leaves no entry. Refusals (403, network refusals, lockouts, failed logins)
are recorded with ``record_on_rollback`` and written after the rollback.

The chains: ``entry_hash = SHA-256(chain, position, seq, fields, prev_hash)``, ``mac =
HMAC(audit key, entry_hash)`` with the key in ``MEDCHAT_KEY_DIR``. A commit appends its entries
to one of ``audit_chains`` chains (``audit``, ``audit/1`` ...) under that chain's head row lock
only (``medchat.audit.heads``: on PostgreSQL the first head no other transaction holds, taken
by the commit or already by the write it audits), so concurrent commits on other chains do not
wait, and no chain ever forks. The global ``seq`` (the access log's total order) is drawn
from a database sequence once the head is locked. Each head records its chain's last position,
so a truncated tail is caught. ``medchat.audit.verification`` walks every chain and names the
first entry that is edited, missing, reordered, or carries a MAC the key did not make. A
truncation followed by restoring an older head (its MAC is genuine: the key made it when that
head was current) is caught only against a record kept outside the database: the signed
anchors of ``medchat.audit.anchor``, which sign every head at once.
Entries never hold message content, names or e-mail addresses: only ids and codes. Network
addresses are sealed, the hash covering a keyed commitment to them, and erased after
``MEDCHAT_AUDIT_ADDRESS_DAYS`` (``medchat.audit.addresses``; format 3).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import BigInteger, Connection, String, bindparam, event, insert, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from medchat.audit import heads
from medchat.audit.addresses import AddressKeys, protect
from medchat.audit.entry_format import (
    FORMAT,
    entry_hash,
    entry_mac,
    head_mac,
)
from medchat.clock import Clock, SystemClock
from medchat.db import on_rollback, table_of
from medchat.db_driver import DriverStatement
from medchat.models import AuditEntry, ChainHead

if TYPE_CHECKING:
    import psycopg

#: The profile key in ``session.info``: it seals each entry's address (``addresses.protect``).
ADDRESS_KEY = "audit_address_key"
#: Core tables: the append writes rows, it needs no ORM objects (nor their flush).
_ENTRIES = table_of(AuditEntry)
_HEADS = table_of(ChainHead)


@dataclass(frozen=True)
class AuditContext:
    """Who acts and from where; set once per request or CLI command."""

    actor_id: uuid.UUID | None = None
    actor_role: str | None = None
    address: str | None = None


@dataclass(frozen=True)
class PendingEntry:
    action: str
    outcome: str
    target_type: str | None
    target_id: str | None
    subject_id: uuid.UUID | None
    details: dict[str, Any]
    context: AuditContext
    at: datetime


def set_context(session: Session, context: AuditContext) -> None:
    """Attach the acting principal and client address to this unit of work."""
    session.info["audit_context"] = context


def get_context(session: Session) -> AuditContext:
    return session.info.get("audit_context") or AuditContext()


def _clock(session: Session) -> Clock:
    return session.info.get("clock") or SystemClock()


def record(
    session: Session,
    action: str,
    *,
    target_type: str | None = None,
    target_id: object | None = None,
    subject_id: uuid.UUID | None = None,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
) -> None:
    """Queue an entry; it is appended when (and only if) this transaction commits.

    ``subject_id`` names the member whose data the action touched (their access log reads it);
    ``details`` holds codes and ids only, never content or personal data.
    """
    entry = PendingEntry(
        action=action,
        outcome=outcome,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        subject_id=subject_id,
        details=details or {},
        context=get_context(session),
        at=_clock(session).now(),
    )
    session.info.setdefault("audit_pending", []).append(entry)


def record_on_rollback(session: Session, action: str, **kwargs: Any) -> None:
    """Audit a refusal: written in its own transaction after the failed one is undone."""
    kwargs.setdefault("outcome", "denied")
    context = get_context(session)

    def _write(fresh: Session) -> None:
        set_context(fresh, context)
        record(fresh, action, **kwargs)

    on_rollback(session, _write)


def _row(item: PendingEntry) -> dict[str, Any]:
    return {
        "at": item.at,
        "actor_id": item.context.actor_id,
        "actor_role": item.context.actor_role,
        "action": item.action,
        "outcome": item.outcome,
        "target_type": item.target_type,
        "target_id": item.target_id,
        "subject_id": item.subject_id,
        "address": None,
        "details": json.dumps(item.details, sort_keys=True, separators=(",", ":")),
    }


_MOVE_HEAD = (
    update(_HEADS)
    .where(_HEADS.c.chain == bindparam("head_chain", type_=String()))
    .values(
        seq=bindparam("head_seq", type_=BigInteger()),
        entry_hash=bindparam("head_hash"),
        mac=bindparam("head_mac"),
    )
)
_INSERT_ENTRIES = insert(_ENTRIES)
#: The common case, one entry, in one round trip on PostgreSQL: the INSERT runs as a
#: data-modifying CTE of the head UPDATE (both or neither). A multi-row VALUES statement is
#: not cacheable by SQLAlchemy (it would be compiled on every commit), so several entries go
#: in as one executemany INSERT followed by the head UPDATE.
_INSERT_ONE_AND_MOVE_HEAD = DriverStatement(
    _MOVE_HEAD.add_cte(
        insert(_ENTRIES)
        .values({c.name: bindparam(f"new_{c.name}", type_=c.type) for c in _ENTRIES.columns})
        .cte("appended")
    )
)


def append_pending(session: Session, *, commit: bool = False) -> None:
    """Append the queued entries to the chain, inside the transaction they belong to.

    The head row lock is held from the first statement here to the commit, so everything
    else the unit of work has to write is flushed before it is taken, and under it run only
    what the chain needs: ``SELECT ... FOR UPDATE`` of a head (``heads.take``: takes the lock,
    reads the last sequence number and hash; on PostgreSQL ``SKIP LOCKED`` over the chains
    from a drawn one, and a second, waiting statement only when every head is held; none when
    the write this commit audits took a head already), the hashes and MACs,
    then the entries and the new head: for one entry on PostgreSQL a single statement (the
    ``INSERT`` as a data-modifying CTE of the head ``UPDATE``), otherwise one ``INSERT`` of
    every entry (executemany) and the head ``UPDATE``. The head row gets one new version per
    append.

    ``commit`` (the ``before_commit`` hook passes it): on PostgreSQL those writes and the
    ``COMMIT`` go to the server together, in one pipeline (``_write_and_commit``), so the
    lock is held for two round trips instead of three. Any failure fails the commit: audit
    fails closed.
    """
    if not session.info.get("audit_pending"):
        return
    # Pending ORM changes go out first: a flush under the head lock would hold it longer.
    session.flush()
    pending: list[PendingEntry] = session.info.pop("audit_pending", [])
    if not pending:
        return
    key: bytes = session.info["audit_mac_key"]
    connection = session.connection()
    # Everything that does not depend on the chain is made before the lock is taken.
    rows = [_row(item) for item in pending]
    entry_ids = [uuid.uuid4() for _ in pending]
    address_keys = AddressKeys(seal=session.info[ADDRESS_KEY], commit=key)
    for row, item, entry_id in zip(rows, pending, entry_ids, strict=True):
        commitment, sealed = protect(address_keys, entry_id, item.context.address)
        row.update(address_hash=commitment, address_sealed=sealed, address_erasure_mac=None)
    chain, position, prev_hash, numbers = heads.take(session, connection, len(rows))
    for row, entry_id, seq in zip(rows, entry_ids, numbers, strict=True):
        position += 1
        row.update(seq=seq, id=entry_id, chain=chain, position=position, format=FORMAT)
        hash_ = entry_hash(row, prev_hash)
        row.update(prev_hash=prev_hash, entry_hash=hash_, mac=entry_mac(key, hash_))
        prev_hash = hash_
    head = {
        "head_chain": chain,
        "head_seq": position,
        "head_hash": prev_hash,
        "head_mac": head_mac(key, position, prev_hash),
    }
    if commit and connection.dialect.name == "postgresql":
        _write_and_commit(connection, rows, head)
    else:
        _write(connection, rows, head)


def _write(connection: Connection, rows: list[dict[str, Any]], head: dict[str, Any]) -> None:
    if connection.dialect.name == "postgresql" and len(rows) == 1:
        params = {f"new_{name}": value for name, value in rows[0].items()}
        _INSERT_ONE_AND_MOVE_HEAD.send(connection, {**params, **head})
    else:
        connection.execute(_INSERT_ENTRIES, rows)
        connection.execute(_MOVE_HEAD, head)


def _write_and_commit(
    connection: Connection, rows: list[dict[str, Any]], head: dict[str, Any]
) -> None:
    """The chain writes and ``COMMIT`` in one psycopg pipeline: one round trip, not two.

    ``COMMIT`` is queued as a statement (``Connection.commit()`` would wait for its own
    answer, and leaving the pipeline would then cost a second round trip). Nothing is
    written after this (the unit of work was flushed before the head lock and this hook is
    the last ``before_commit`` step), so the session's own commit that follows finds the
    connection idle and sends nothing. An error of any statement or of the
    ``COMMIT`` itself is raised when the pipeline ends, as SQLAlchemy's ``DBAPIError``; the
    transaction is then aborted and the session's rollback clears it.
    """
    # PostgreSQL is reached through psycopg 3 only (postgresql+psycopg): its connection.
    driver = cast("psycopg.Connection[Any]", connection.connection.driver_connection)
    dbapi = connection.dialect.loaded_dbapi
    try:
        with driver.pipeline():
            _write(connection, rows, head)
            driver.execute("COMMIT")
    except dbapi.Error as exc:
        raise DBAPIError.instance(None, None, exc, dbapi.Error) from exc


@event.listens_for(Session, "before_commit")
def _append_on_commit(session: Session) -> None:
    # Releasing a SAVEPOINT fires this too. Entries wait for the outermost commit: appended
    # at a release, they (the whole request's so far) would vanish with an enclosing
    # savepoint rolled back later, and the chain head would stay locked for the rest of it.
    if session.in_nested_transaction():
        return
    if session.info.get("audit_pending"):
        append_pending(session, commit=True)
