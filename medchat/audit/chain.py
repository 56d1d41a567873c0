"""Every data change and every read of medical content is audited, and the log cannot be
rewritten unnoticed (SECURITY-MODEL "Audit").

Entries are recorded during a unit of work and appended when it commits, in the same
transaction: if the audit append fails the change is rolled back (audit fails closed), and a
rolled-back change leaves no entry. Refusals (403, network refusals, lockouts, failed logins)
are recorded with ``record_on_rollback`` and written after the rollback.

The chains: ``entry_hash = SHA-256(chain, position, seq, fields, prev_hash)``, ``mac =
HMAC(audit key, entry_hash)`` with the key in ``MEDCHAT_KEY_DIR``. A commit appends its entries
to one of ``audit_chains`` chains (``audit``, ``audit/1`` ...) and locks that chain's head row
only: on PostgreSQL the first head no other commit holds, looked at from a chain drawn at
random (``SELECT ... FOR UPDATE SKIP LOCKED``), so a commit waits only when every chain is
taken, and then for the drawn one; SQLite's write lock serialises writers anyway, so there it
takes the drawn chain. Concurrent commits on other chains do not wait, and no chain ever
forks. The global ``seq`` (the access log's total order) is taken from a database
sequence in the same statement as the head lock. Each head records its chain's last position,
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
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    BigInteger,
    Connection,
    String,
    any_,
    bindparam,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from medchat.audit.addresses import AddressKeys, protect
from medchat.audit.entry_format import (
    FORMAT,
    entry_hash,
    entry_mac,
    head_mac,
)
from medchat.clock import Clock, SystemClock
from medchat.config import AUDIT_MAX_CHAINS
from medchat.db import on_rollback, table_of
from medchat.db_driver import DriverStatement
from medchat.models import AuditEntry, ChainHead

if TYPE_CHECKING:
    import psycopg

AUDIT_CHAIN = "audit"
#: Heads ``audit``, ``audit/1`` ... ``audit/63`` exist from migration 0015 on; a deployment
#: appends to the first ``Settings.audit_chain_count`` of them (``chain_name``).
MAX_CHAINS = AUDIT_MAX_CHAINS
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


def chain_name(index: int) -> str:
    """``audit`` for the first chain (the one every entry before 0015 is on), ``audit/N`` after."""
    return AUDIT_CHAIN if index == 0 else f"{AUDIT_CHAIN}/{index}"


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


#: Taking the chain's head row lock first serialises appends to that chain: it can never fork.
#: Statements are built once (building one costs more CPU than running it), with bound
#: parameters. On PostgreSQL the same round trip draws the entries' global ``seq`` values from
#: ``audit_entry_seq`` (a sequence takes no lock and never hands out a value twice).
#: The CTE locks the head row first; only the row it returns, once locked, draws the seq
#: values (a target list beside ``FOR UPDATE`` would run before a waiting lock is granted,
#: and a chain's positions would then disagree with the order of its seq values).
_LOCKED_HEAD = (
    select(_HEADS.c.seq, _HEADS.c.entry_hash)
    .where(_HEADS.c.chain == bindparam("chain", type_=String()))
    .with_for_update()
    .cte("locked_head")
)
_NUMBERS = text(
    "(SELECT array_agg(nextval('audit_entry_seq')) FROM generate_series(1, :entries))"
).bindparams(bindparam("entries", type_=BigInteger()))
_LOCK_HEAD_AND_NUMBER = select(_LOCKED_HEAD.c.seq, _LOCKED_HEAD.c.entry_hash, _NUMBERS)
#: PostgreSQL: the first head of ``chains``, in that order, that no other commit holds, locked
#: without waiting (a held head is skipped); no row when every one is held.
_CHAINS = bindparam("chains", type_=ARRAY(String()))
_FREE_HEAD = (
    select(_HEADS.c.chain, _HEADS.c.seq, _HEADS.c.entry_hash)
    .where(_HEADS.c.chain == any_(_CHAINS))
    .order_by(func.array_position(_CHAINS, _HEADS.c.chain))
    .limit(1)
    .with_for_update(skip_locked=True)
    .cte("free_head")
)
_LOCK_FREE_HEAD_AND_NUMBER = DriverStatement(
    select(_FREE_HEAD.c.chain, _FREE_HEAD.c.seq, _FREE_HEAD.c.entry_hash, _NUMBERS)
)
#: The same for one entry, a request's usual commit, with its number drawn without
#: ``generate_series``: PostgreSQL prices a set-returning function of a parameter at 1,000
#: rows, so the statement above never earns a generic plan and is planned again at every
#: execution (about 0.1 ms of PostgreSQL's CPU per commit, bench/README.md). This one gets
#: a generic plan, made once per connection, while the heads table is the page or two that
#: autovacuum keeps it (PostgreSQL keeps whichever plan costs less).
_LOCK_FREE_HEAD_AND_ONE_NUMBER = DriverStatement(
    select(
        _FREE_HEAD.c.chain,
        _FREE_HEAD.c.seq,
        _FREE_HEAD.c.entry_hash,
        text("ARRAY[nextval('audit_entry_seq')]"),
    )
)
#: SQLite: the head and the highest seq so far, in one statement (no sequences there).
_READ_HEAD_AND_LAST_SEQ = select(
    _HEADS.c.seq,
    _HEADS.c.entry_hash,
    select(func.coalesce(func.max(_ENTRIES.c.seq), 0)).scalar_subquery(),
).where(_HEADS.c.chain == bindparam("chain", type_=String()))
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
    what the chain needs: ``SELECT ... FOR UPDATE`` of a head (takes the lock, reads the
    last sequence number and hash; on PostgreSQL ``SKIP LOCKED`` over the chains from a drawn
    one, and a second, waiting statement only when every head is held), the hashes and MACs,
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
    count = session.info.get("audit_chains", 1)
    drawn = secrets.randbelow(count)
    chains = [chain_name((drawn + offset) % count) for offset in range(count)]
    connection = session.connection()
    # Everything that does not depend on the chain is made before the lock is taken.
    rows = [_row(item) for item in pending]
    entry_ids = [uuid.uuid4() for _ in pending]
    address_keys = AddressKeys(seal=session.info[ADDRESS_KEY], commit=key)
    for row, item, entry_id in zip(rows, pending, entry_ids, strict=True):
        commitment, sealed = protect(address_keys, entry_id, item.context.address)
        row.update(address_hash=commitment, address_sealed=sealed, address_erasure_mac=None)
    chain, position, prev_hash, numbers = _lock_head(connection, chains, len(rows))
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


def _lock_head(
    connection: Connection, chains: list[str], entries: int
) -> tuple[str, int, bytes, list[int]]:
    """Lock the head of one of ``chains`` (the first no one holds, else wait for the first):
    its name, last position and hash, and ``entries`` new ``seq`` values."""
    if connection.dialect.name == "postgresql":
        if entries == 1:
            free = _LOCK_FREE_HEAD_AND_ONE_NUMBER.one_or_none(connection, {"chains": chains})
        else:
            params = {"chains": chains, "entries": entries}
            free = _LOCK_FREE_HEAD_AND_NUMBER.one_or_none(connection, params)
        if free is not None:
            chain, position, prev_hash, numbers = free
            return chain, position, prev_hash, sorted(numbers)
        # Every chain is held by a commit in flight: wait for the drawn one.
        position, prev_hash, numbers = connection.execute(
            _LOCK_HEAD_AND_NUMBER, {"chain": chains[0], "entries": entries}
        ).one()
        return chains[0], position, prev_hash, sorted(numbers)
    # SQLite: the transaction holds the database's write lock (BEGIN IMMEDIATE), so the
    # highest seq cannot move under us.
    position, prev_hash, last = connection.execute(
        _READ_HEAD_AND_LAST_SEQ, {"chain": chains[0]}
    ).one()
    return chains[0], position, prev_hash, list(range(last + 1, last + 1 + entries))


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
