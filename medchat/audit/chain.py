"""Every data change and every read of medical content is audited, and the log cannot be
rewritten unnoticed (SECURITY-MODEL "Audit").

Entries are recorded during a unit of work and appended when it commits, in the same
transaction: if the audit append fails the change is rolled back (audit fails closed), and a
rolled-back change leaves no entry. Refusals (403, network refusals, lockouts, failed logins)
are recorded with ``record_on_rollback`` and written after the rollback.

The chain: ``entry_hash = SHA-256(fields, prev_hash)``, ``mac = HMAC(audit key, entry_hash)``
with the key in ``MEDCHAT_KEY_DIR``; the genesis hash and the head's MAC are those of every
hash chain (``medchat.audit.hash_chain``). Appends lock the chain head row (``SELECT ... FOR
UPDATE`` on PostgreSQL, the database write lock on SQLite), so concurrent writers never fork;
the head also records the last sequence number, so a truncated tail is caught. ``verify``
names the first entry that is edited, missing, reordered, or carries a MAC the key did not make.
A truncation followed by restoring an older head (its MAC is genuine: the key made it when
that head was current) is caught only against a record kept outside the database: the signed
anchors of ``medchat.audit.anchor``, which sign ``checked_head``.
Entries never hold message content, names or e-mail addresses: only ids and codes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, bindparam, event, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from access_control import crypto
from medchat.audit.hash_chain import AUDIT, GENESIS_HASH
from medchat.clock import Clock, SystemClock
from medchat.db import on_rollback
from medchat.models import AuditEntry, ChainHead

AUDIT_CHAIN = AUDIT.name
_ENTRY_LABEL = "medchat/audit-entry/v1"
_MAC_LABEL = "medchat/audit-mac/v1"
#: Core tables: the append writes rows, it needs no ORM objects (nor their flush).
_ENTRIES = AuditEntry.__table__
_HEADS = ChainHead.__table__


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


@dataclass
class VerifyResult:
    ok: bool
    entries: int
    first_bad: int | None = None
    reason: str | None = None
    head_seq: int = 0
    head_hash: str = field(default="")

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_bad": self.first_bad,
            "reason": self.reason,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
        }


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


def _entry_hash(seq: int, entry_id: uuid.UUID, prev_hash: bytes, row: dict[str, Any]) -> bytes:
    return crypto.digest(
        _ENTRY_LABEL,
        seq,
        entry_id,
        row["at"].isoformat(),
        row["actor_id"],
        row["actor_role"],
        row["action"],
        row["outcome"],
        row["target_type"],
        row["target_id"],
        row["subject_id"],
        row["address"],
        row["details"],
        prev_hash,
    )


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
        "address": item.context.address,
        "details": json.dumps(item.details, sort_keys=True, separators=(",", ":")),
    }


#: Taking the head row lock first serialises appends: the chain can never fork. Statements
#: are built once (building one costs more CPU than running it), with bound parameters.
_LOCK_HEAD = (
    select(_HEADS.c.seq, _HEADS.c.entry_hash).where(_HEADS.c.chain == AUDIT_CHAIN).with_for_update()
)
_MOVE_HEAD = (
    update(_HEADS)
    .where(_HEADS.c.chain == AUDIT_CHAIN)
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
_INSERT_ONE_AND_MOVE_HEAD = _MOVE_HEAD.add_cte(
    insert(_ENTRIES)
    .values({c.name: bindparam(f"new_{c.name}", type_=c.type) for c in _ENTRIES.columns})
    .cte("appended")
)


def append_pending(session: Session, *, commit: bool = False) -> None:
    """Append the queued entries to the chain, inside the transaction they belong to.

    The head row lock is held from the first statement here to the commit, so everything
    else the unit of work has to write is flushed before it is taken, and under it run only
    what the chain needs: ``SELECT ... FOR UPDATE`` of the head (takes the lock, reads the
    last sequence number and hash), the hashes and MACs, then the entries and the new head:
    for one entry on PostgreSQL a single statement (the ``INSERT`` as a data-modifying CTE
    of the head ``UPDATE``), otherwise one ``INSERT`` of every entry (executemany) and the
    head ``UPDATE``. The head row gets one new version per append.

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
    seq, prev_hash = connection.execute(_LOCK_HEAD).one()
    for row, entry_id in zip(rows, entry_ids, strict=True):
        seq += 1
        entry_hash = _entry_hash(seq, entry_id, prev_hash, row)
        row.update(
            seq=seq,
            id=entry_id,
            prev_hash=prev_hash,
            entry_hash=entry_hash,
            mac=crypto.mac(key, _MAC_LABEL, entry_hash),
        )
        prev_hash = entry_hash
    head_mac = AUDIT.head_mac(key, seq, prev_hash)
    head = {"head_seq": seq, "head_hash": prev_hash, "head_mac": head_mac}
    if commit and connection.dialect.name == "postgresql":
        _write_and_commit(connection, rows, head)
    else:
        _write(connection, rows, head)


def _write(connection: Connection, rows: list[dict[str, Any]], head: dict[str, Any]) -> None:
    if connection.dialect.name == "postgresql" and len(rows) == 1:
        params = {f"new_{name}": value for name, value in rows[0].items()}
        connection.execute(_INSERT_ONE_AND_MOVE_HEAD, {**params, **head})
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
    driver = connection.connection.driver_connection
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


def _rows(session: Session, batch: int = 2000) -> Iterator[AuditEntry]:
    last = 0
    while True:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def checked_head(session: Session, key: bytes) -> tuple[int, bytes]:
    """The chain head (sequence, entry hash) once its MAC and its entry check out.

    What an anchor signs: the head row's MAC is the audit key's, and the entry it names is
    present, carries that hash and a MAC made with the key (a point check, not the walk of
    ``verify``). Raises ``IntegrityCheckFailed`` naming what does not hold.
    """
    head = AUDIT.read_head(session)
    if head is None:
        raise crypto.IntegrityCheckFailed("the chain head is missing")
    if head.seq == 0:
        return 0, GENESIS_HASH
    try:
        AUDIT.verify_head_mac(key, head)
    except crypto.IntegrityCheckFailed:
        raise crypto.IntegrityCheckFailed(
            "the chain head's MAC was not made with the audit key"
        ) from None
    entry = session.scalar(select(AuditEntry).where(AuditEntry.seq == head.seq))
    if entry is None or entry.entry_hash != head.entry_hash:
        raise crypto.IntegrityCheckFailed(f"entry {head.seq} is not the one the head records")
    try:
        crypto.verify_mac(key, entry.mac, _MAC_LABEL, entry.entry_hash)
    except crypto.IntegrityCheckFailed:
        raise crypto.IntegrityCheckFailed(
            f"entry {head.seq}: MAC not made with the audit key"
        ) from None
    return head.seq, head.entry_hash


def verify(session: Session, key: bytes) -> VerifyResult:
    """Walk the whole chain; report the first entry that breaks it, or ok."""
    prev_hash = GENESIS_HASH
    expected_seq = 1
    count = 0
    for entry in _rows(session):
        count += 1
        if entry.seq != expected_seq:
            return VerifyResult(False, count, expected_seq, f"entry {expected_seq} is missing")
        row = {
            "at": entry.at,
            "actor_id": entry.actor_id,
            "actor_role": entry.actor_role,
            "action": entry.action,
            "outcome": entry.outcome,
            "target_type": entry.target_type,
            "target_id": entry.target_id,
            "subject_id": entry.subject_id,
            "address": entry.address,
            "details": entry.details,
        }
        computed = _entry_hash(entry.seq, entry.id, prev_hash, row)
        if entry.prev_hash != prev_hash:
            return VerifyResult(False, count, entry.seq, "does not link to the previous entry")
        if computed != entry.entry_hash:
            return VerifyResult(False, count, entry.seq, "content does not match its hash")
        try:
            crypto.verify_mac(key, entry.mac, _MAC_LABEL, entry.entry_hash)
        except crypto.IntegrityCheckFailed:
            return VerifyResult(False, count, entry.seq, "MAC not made with the audit key")
        prev_hash = entry.entry_hash
        expected_seq += 1
    head = AUDIT.read_head(session)
    last_seq = expected_seq - 1
    if head is None:
        return VerifyResult(False, count, None, "the chain head is missing")
    result = VerifyResult(True, count, head_seq=head.seq, head_hash=head.entry_hash.hex())
    if head.seq != last_seq or head.entry_hash != (prev_hash if last_seq else GENESIS_HASH):
        result.ok = False
        result.first_bad = last_seq + 1
        result.reason = f"chain ends at entry {last_seq} but its head records entry {head.seq}"
        return result
    if head.seq:
        try:
            AUDIT.verify_head_mac(key, head)
        except crypto.IntegrityCheckFailed:
            result.ok = False
            result.first_bad = head.seq
            result.reason = "the chain head's MAC was not made with the audit key"
    return result
