"""The hot paths' statements, compiled once by SQLAlchemy and run by psycopg itself.

SQLAlchemy builds and compiles every statement here; on PostgreSQL a ``DriverStatement`` then
hands the compiled SQL straight to a psycopg cursor of the same connection, inside the same
transaction. Measured on the 2-core benchmark machine, the token check through
``Session.execute`` cost 279 us of the request thread's CPU, through ``Connection.execute``
251 us and through a psycopg cursor of the same connection 129 us (the round trip's wait is
not CPU): SQLAlchemy's execution context, cache-key hashing, result metadata and row objects
cost more than psycopg's own work, on every statement of every request. A send runs four such
statements and a read-50 two (bench/README.md).

What SQLAlchemy's execution does that matters, kept here:

- **Bound values** go through each parameter's type (its ``bind_processor`` for this
  dialect, as SQLAlchemy applies it), and the statement's own values (a literal in it, such
  as ``coalesce(..., 1)``) come from the compiled statement. A required parameter left
  out is refused before anything is sent, with SQLAlchemy's ``StatementError``.
- **Result values** go through each column's type (its ``result_processor``, made from
  psycopg's description of the first result, as SQLAlchemy makes it).
- **Errors** go through the connection's own error handling: the engine's ``handle_error``
  hooks run (row data withheld from messages, stale sessions discarded), a lost connection
  is invalidated, and the error is SQLAlchemy's ``DBAPIError``, as from
  ``Connection.execute``.
- **Cursor events**: ``before_cursor_execute`` and ``after_cursor_execute`` listeners, when
  any are registered (tests, ``bench.profile``), get every statement, with no execution
  context (``None``).

Each statement stays within what psycopg parses once and keeps (4,096 characters, 50
parameters; a longer one is parsed again at every execution): ``tests/unit/test_db_driver.py``.

Everywhere else the statement simply runs through ``Connection.execute``: SQLite (its
driver wants other parameter styles and types), and an engine that echoes its SQL (an
operator debugging reads every statement in SQLAlchemy's log). Rows come back as tuples
(SQLAlchemy's ``Row`` on the fallback, a tuple too), read by position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary, WeakSet

from psycopg.pq import TransactionStatus
from sqlalchemy import ColumnClause, Connection, Row, Select, TextClause, UpdateBase
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import ArgumentError, InvalidRequestError, StatementError
from sqlalchemy.orm import Session
from sqlalchemy.sql import visitors
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

Processor = Callable[[Any], Any]
_IDLE = TransactionStatus.IDLE


@dataclass
class _Plan:
    """One statement compiled for one dialect: its SQL, its parameters, its result types."""

    sql: str
    #: Values the statement carries itself, by parameter name.
    defaults: dict[str, Any]
    #: Parameters the caller must give.
    required: frozenset[str]
    #: (parameter name, its type's bind processor) for the types that have one.
    binds: tuple[tuple[str, Processor], ...]
    #: The result columns' types, made into processors at the first result: (column
    #: index, processor) for the columns whose type has one.
    result_types: tuple[Any, ...]
    results: tuple[tuple[int, Processor], ...] | None = field(default=None)


def _plan(statement: Any, dialect: Dialect) -> _Plan:
    compiled = statement.compile(dialect=dialect)
    if not isinstance(compiled, SQLCompiler) or compiled.positional:
        raise ArgumentError("a driver statement needs named parameters")
    if compiled.post_compile_params or compiled.literal_execute_params:
        raise ArgumentError("a driver statement is rendered once: no expanding parameters")
    if compiled.escaped_bind_names:
        raise ArgumentError("a driver statement's parameter names need no escaping")
    defaults: dict[str, Any] = {}
    required: set[str] = set()
    binds: list[tuple[str, Processor]] = []
    for bind, name in compiled.bind_names.items():
        if bind.callable is not None:
            raise ArgumentError("a driver statement takes no computed parameters")
        if bind.required:
            if name != bind.key:
                raise ArgumentError(f"parameter {bind.key!r} is compiled as {name!r}")
            required.add(name)
        else:
            defaults[name] = bind.value
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None and all(name != known for known, _ in binds):
            binds.append((name, processor))
    return _Plan(
        sql=compiled.string,
        defaults=defaults,
        required=frozenset(required),
        binds=tuple(binds),
        result_types=tuple(column.type for column in compiled._result_columns),
    )


class DriverStatement:
    """A Core statement (no ORM entities) run through the driver on PostgreSQL.

    ``outside_transaction``: a plain read (``require_plain_read``) that opens no transaction
    on a connection that has none open yet (``outside_transaction``)."""

    __slots__ = ("_plans", "outside_transaction", "statement")

    def __init__(self, statement: Executable, *, outside_transaction: bool = False) -> None:
        if outside_transaction:
            require_plain_read(statement)
        self.statement = statement
        self.outside_transaction = outside_transaction
        self._plans: WeakKeyDictionary[Dialect, _Plan] = WeakKeyDictionary()

    def all(self, connection: Connection, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """Every row of the result."""
        return self._run(connection, params, fetch=True)

    def one_or_none(
        self, connection: Connection, params: Mapping[str, Any]
    ) -> Sequence[Any] | None:
        """The only row, or ``None``; more than one is an error (as ``Result.one_or_none``)."""
        rows = self.all(connection, params)
        if len(rows) > 1:
            raise ArgumentError("a driver statement expected at most one row")
        return rows[0] if rows else None

    def send(self, connection: Connection, params: Mapping[str, Any]) -> None:
        """Run a statement that returns no rows without waiting to read any: in a psycopg
        pipeline its result (and any error) arrives when the pipeline is synced."""
        self._run(connection, params, fetch=False)

    def _run(
        self, connection: Connection, params: Mapping[str, Any], *, fetch: bool
    ) -> Sequence[Sequence[Any]]:
        dialect = connection.dialect
        if dialect.name != "postgresql" or connection.engine.echo:
            result = connection.execute(self.statement, params)
            return result.all() if fetch else ()
        plan = self._plans.get(dialect)
        if plan is None:
            plan = self._plans[dialect] = _plan(self.statement, dialect)
        missing = plan.required.difference(params)
        if missing:
            # What SQLAlchemy raises for it, before anything is sent.
            message = f"A value is required for bind parameter {min(missing)!r}"
            raise StatementError(message, plan.sql, None, InvalidRequestError(message))
        values = {**plan.defaults, **params}
        for name, processor in plan.binds:
            values[name] = processor(values[name])
        if self.outside_transaction:
            with outside_transaction(connection):
                return _execute(connection, plan, values, fetch)
        return _execute(connection, plan, values, fetch)


#: What a statement run outside a transaction may call: functions that only read (none
#: writes, locks, draws from a sequence or reads the time of a transaction).
READING_FUNCTIONS = frozenset({"array_position", "coalesce", "count", "max", "min"})
_PLAIN_READS: WeakSet[Any] = WeakSet()


def require_plain_read(statement: Executable) -> None:
    """Refuse (``ArgumentError``) a statement that is not a plain read: one SELECT with no
    row lock anywhere in it, no INSERT, UPDATE or DELETE (a data-modifying CTE), no SQL text
    this check cannot see into, and no function outside ``READING_FUNCTIONS``. Such a
    statement sees under READ COMMITTED exactly what it would see in a transaction."""
    if statement in _PLAIN_READS:
        return
    if not isinstance(statement, Select):
        raise ArgumentError("only a SELECT runs outside a transaction")
    for element in visitors.iterate(statement):
        if isinstance(element, Select) and element._for_update_arg is not None:
            raise ArgumentError("a statement that locks rows runs in a transaction")
        if isinstance(element, UpdateBase):
            raise ArgumentError("a statement that writes runs in a transaction")
        # A literal column is SQL text, but for the ``*`` of ``EXISTS (SELECT * ...)``.
        literal = isinstance(element, ColumnClause) and element.is_literal and element.name != "*"
        if isinstance(element, TextClause) or literal:
            raise ArgumentError("SQL text cannot be checked: it runs in a transaction")
        if isinstance(element, FunctionElement) and element.name not in READING_FUNCTIONS:
            raise ArgumentError(f"{element.name}() is not known to only read")
    _PLAIN_READS.add(statement)


@contextmanager
def outside_transaction(connection: Connection) -> Iterator[None]:
    """Run the block's statements without opening a transaction, when the connection has
    none open yet (PostgreSQL; elsewhere, or in a transaction, the block runs as it is).

    psycopg opens a transaction (``BEGIN``, a round trip) before the first statement of a
    connection that has none, and the request's commit then closes it (``COMMIT``, another).
    A request that only reads, such as a member's read of a page, needs neither: under READ
    COMMITTED each statement sees what was committed when it began, in a transaction or not.
    So the block runs in psycopg's autocommit mode, which is turned off again after it: the
    first statement that writes or locks still opens the transaction every later statement
    and the commit share. A connection that is not idle after the block (it broke under a
    statement) is invalidated, so it never returns to the pool in autocommit mode.
    """
    dbapi = connection.connection.dbapi_connection
    if (
        connection.dialect.name != "postgresql"
        or dbapi.autocommit  # type: ignore[union-attr]
        or dbapi.info.transaction_status != _IDLE  # type: ignore[union-attr]
    ):
        yield
        return
    dbapi.autocommit = True  # type: ignore[union-attr]
    try:
        yield
    finally:
        if dbapi.info.transaction_status == _IDLE:  # type: ignore[union-attr]
            dbapi.autocommit = False  # type: ignore[union-attr]
        elif not connection.invalidated:
            connection.invalidate()


def read_outside_transaction(
    session: Session, statement: Executable, params: Mapping[str, Any]
) -> Sequence[Row[Any]]:
    """``session.execute(statement, params).all()`` for a plain read (``require_plain_read``,
    ORM entities allowed), run ``outside_transaction``. What the session holds unwritten is
    flushed first, in its transaction, as ``Session.execute`` would have flushed it."""
    require_plain_read(statement)
    session.flush()
    with outside_transaction(session.connection()):
        return session.execute(statement, params).all()


def _execute(
    connection: Connection, plan: _Plan, values: dict[str, Any], fetch: bool
) -> Sequence[Sequence[Any]]:
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    dispatch = connection.dispatch
    try:
        if dispatch.before_cursor_execute:
            dispatch.before_cursor_execute(connection, cursor, plan.sql, values, None, False)
        cursor.execute(plan.sql, values)
        rows: Sequence[Sequence[Any]] = ()
        if fetch:
            rows = cursor.fetchall()
            if plan.results is None:
                plan.results = _result_processors(plan, connection.dialect, cursor.description)
            cursor.close()
            rows = _processed(rows, plan.results)
        if dispatch.after_cursor_execute:
            dispatch.after_cursor_execute(connection, cursor, plan.sql, values, None, False)
    except connection.dialect.loaded_dbapi.Error as exc:
        connection._handle_dbapi_exception(exc, plan.sql, values, cursor, None)
    return rows


def _result_processors(
    plan: _Plan, dialect: Dialect, description: Any
) -> tuple[tuple[int, Processor], ...]:
    # The type code (a description entry's second item) tells some types how to read it
    # (psycopg's numerics).
    processors = (
        type_.dialect_impl(dialect).result_processor(dialect, description[i][1])
        for i, type_ in enumerate(plan.result_types)
    )
    return tuple((i, p) for i, p in enumerate(processors) if p is not None)


def _processed(
    rows: Sequence[Sequence[Any]], processors: tuple[tuple[int, Processor], ...]
) -> Sequence[Sequence[Any]]:
    if not processors:
        return rows
    out = []
    for row in rows:
        values = list(row)
        for i, processor in processors:
            values[i] = processor(values[i])
        out.append(tuple(values))
    return out
