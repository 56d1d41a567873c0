"""Which chain a commit's audit entries go to, and the lock on that chain's head row.

A chain's head row lock serialises appends to that chain: it never forks. A commit appends to
one of ``audit_chains`` chains (``audit``, ``audit/1`` ...): on PostgreSQL the first head no
other commit holds, looked at from a chain drawn at random (``SELECT ... FOR UPDATE SKIP
LOCKED``), so a commit waits only when every chain is taken, and then for the drawn one;
SQLite's write lock serialises writers anyway, so there it takes the drawn chain. The same
statement draws the entries' global ``seq`` values from the sequence ``audit_entry_seq``
(a sequence takes no lock and never hands out a value twice), after the lock is granted, so
within a chain ``seq`` and ``position`` rise together.

**A head taken by the write itself** (PostgreSQL). A statement that writes what the commit
will audit, a message's append (``medchat.services.message_append``), may take a free head
in the same statement (``head_after``): the head's row, locked, and one ``seq`` come back with
the write's own result, and the commit appends to that head (``take``) instead of locking one
in a statement of its own, one round trip fewer on every send. The head is then held from
that statement to the commit, a little longer than from the commit's first statement; by
Little's law the heads held at once are the appends a second times the time each holds one
(1,000 sends a second holding a head 2 ms each hold 2 on average), far below the 16 chains.
A head is taken early only by the outermost transaction (a savepoint rolled back would
release its lock) and once per transaction; a held head belongs to the transaction that took
it (``HeldHead.transaction``) and to no later one. A commit with more entries than drawn
``seq`` values draws the rest after the first.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    Connection,
    String,
    any_,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, SessionTransaction

from medchat.config import AUDIT_MAX_CHAINS
from medchat.db import table_of
from medchat.db_driver import DriverStatement
from medchat.models import AuditEntry, ChainHead

AUDIT_CHAIN = "audit"
#: Heads ``audit``, ``audit/1`` ... ``audit/63`` exist from migration 0015 on; a deployment
#: appends to the first ``Settings.audit_chain_count`` of them (``chain_name``).
MAX_CHAINS = AUDIT_MAX_CHAINS
#: Where a head taken by a write waits for its commit (``session.info``).
HELD = "audit_held_head"
_ENTRIES = table_of(AuditEntry)
_HEADS = table_of(ChainHead)


def chain_name(index: int) -> str:
    """``audit`` for the first chain (the one every entry before 0015 is on), ``audit/N`` after."""
    return AUDIT_CHAIN if index == 0 else f"{AUDIT_CHAIN}/{index}"


def chain_order(session: Session) -> list[str]:
    """The chains this session appends to, from one drawn at random: the order a commit
    looks for a free head in."""
    count: int = session.info["audit_chains"]
    drawn = secrets.randbelow(count)
    return [chain_name((drawn + offset) % count) for offset in range(count)]


#: Statements are built once (building one costs more CPU than running it), with bound
#: parameters. The CTE locks the head row first; only the row it returns, once locked, draws
#: the seq values (a target list beside ``FOR UPDATE`` would run before a waiting lock is
#: granted, and a chain's positions would then disagree with the order of its seq values).
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
#: More ``seq`` values for a held head (a commit of several entries).
_MORE_NUMBERS = select(_NUMBERS)
#: ``seq`` for one entry, drawn without ``generate_series``: PostgreSQL prices a set-returning
#: function of a parameter at 1,000 rows, so a statement holding one never earns a generic
#: plan and is planned again at every execution (about 0.1 ms of PostgreSQL's CPU per commit,
#: bench/README.md); statements with this get a generic plan, made once per connection.
_ONE_NUMBER: ColumnElement[Any] = literal_column("ARRAY[nextval('audit_entry_seq')]")
#: PostgreSQL: the chains to look at, in order.
_CHAINS = bindparam("chains", type_=ARRAY(String()))


def _free_head(*conditions: ColumnElement[bool]) -> CTE:
    """PostgreSQL: the first head of ``chains``, in that order, that no other transaction
    holds, locked without waiting (a held head is skipped); no row when every one is held."""
    return (
        select(_HEADS.c.chain, _HEADS.c.seq, _HEADS.c.entry_hash)
        .where(_HEADS.c.chain == any_(_CHAINS), *conditions)
        .order_by(func.array_position(_CHAINS, _HEADS.c.chain))
        .limit(1)
        .with_for_update(skip_locked=True)
        .cte("free_head")
    )


_FREE_HEAD = _free_head()
_LOCK_FREE_HEAD_AND_NUMBER = DriverStatement(
    select(_FREE_HEAD.c.chain, _FREE_HEAD.c.seq, _FREE_HEAD.c.entry_hash, _NUMBERS)
)
#: The same for one entry, a request's usual commit: this one gets a generic plan while the
#: heads table is the page or two that autovacuum keeps it (PostgreSQL keeps whichever plan
#: costs less).
_LOCK_FREE_HEAD_AND_ONE_NUMBER = DriverStatement(
    select(_FREE_HEAD.c.chain, _FREE_HEAD.c.seq, _FREE_HEAD.c.entry_hash, _ONE_NUMBER)
)
#: SQLite: the head and the highest seq so far, in one statement (no sequences there).
_READ_HEAD_AND_LAST_SEQ = select(
    _HEADS.c.seq,
    _HEADS.c.entry_hash,
    select(func.coalesce(func.max(_ENTRIES.c.seq), 0)).scalar_subquery(),
).where(_HEADS.c.chain == bindparam("chain", type_=String()))


@dataclass(frozen=True)
class HeldHead:
    """A head a write's statement locked for its transaction's commit."""

    transaction: SessionTransaction
    chain: str
    position: int
    prev_hash: bytes
    numbers: list[int]


def head_after(written: CTE) -> tuple[CTE, list[ColumnElement[Any]]]:
    """The pieces a write's statement (PostgreSQL) adds to take a head for its commit: a free
    head, looked for only when ``written`` (a data-modifying CTE) returned a row, to join
    (outer, on true) to that row, and the columns to select from it for ``hold``: chain,
    position, hash and one ``seq``, NULL when every head is held. Its parameter is
    ``chains`` (``chain_order``)."""
    head = _free_head(exists(select(literal_column("1")).select_from(written)))
    number = case((head.c.chain.is_not(None), _ONE_NUMBER))
    return head, [head.c.chain, head.c.seq, head.c.entry_hash, number]


def may_hold(session: Session) -> bool:
    """Whether a write in this session (on PostgreSQL) may take a head for the commit now: in
    the outermost transaction, when it holds none yet."""
    if session.in_nested_transaction():
        return False
    held = session.info.get(HELD)
    return held is None or held.transaction is not session.get_transaction()


def hold(session: Session, columns: Sequence[Any]) -> None:
    """Keep the head ``head_after``'s columns returned (if any) for this transaction's commit."""
    chain, position, prev_hash, numbers = columns
    transaction = session.get_transaction()  # the one the write ran in
    if chain is not None and transaction is not None:
        session.info[HELD] = HeldHead(transaction, chain, position, prev_hash, list(numbers))


def take(
    session: Session, connection: Connection, entries: int
) -> tuple[str, int, bytes, list[int]]:
    """The head this transaction's ``entries`` entries go to, locked: the one a write took
    (with more ``seq`` values drawn if it has too few), else one locked now (``lock_head``).
    Its name, last position and hash, and ``entries`` new ``seq`` values in rising order."""
    held = session.info.pop(HELD, None)
    if held is None or held.transaction is not session.get_transaction():
        return lock_head(connection, chain_order(session), entries)
    numbers = held.numbers
    if entries > len(numbers):
        params = {"entries": entries - len(numbers)}
        numbers = numbers + connection.execute(_MORE_NUMBERS, params).scalar_one()
    return held.chain, held.position, held.prev_hash, sorted(numbers)


def lock_head(
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
