"""One transaction per unit of work: a request or CLI command that fails changes nothing.

The schema comes only from Alembic (``medchat/migrations/``). This module holds the declarative
``Base`` (naming convention, UTC-aware times, portable UUIDs), the engine set-up for SQLite
and PostgreSQL, and ``Database.transaction()``: commit on success, roll back on any error.

Some writes must survive a failed request: a denied request and a failed login are audited
(SECURITY-MODEL "Audit"). Code registers those with ``on_rollback(session, action)``; after the
rollback they run in a fresh transaction of their own, so the failed change stays undone while
the record of the refusal is kept.
"""

from __future__ import annotations

import secrets
import select
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import psycopg
from sqlalchemy import DateTime, Engine, MetaData, Table, create_engine, event
from sqlalchemy.engine import CursorResult, ExceptionContext, Result
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator, Uuid

from medchat.db_cursor import ColumnsOnDemandCursor

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RollbackAction = Callable[[Session], None]


#: PostgreSQL errors that say "this connection's session is unusable", not "this statement is
#: wrong": read-only transaction (25006: a role or database made read-only, or a standby after
#: fail-over; the setting sticks to the session, so the connection stays broken after the
#: role is restored), connection exceptions (class 08) and operator intervention (57P01-03:
#: shutdown, crash, starting up). A connection that raised one is discarded, never reused.
STALE_SESSION_SQLSTATES: Final = frozenset(
    {"25006", "08000", "08003", "08006", "08001", "08004", "57P01", "57P02", "57P03"}
)


def sqlstate_of(error: BaseException | None) -> str | None:
    """The SQLSTATE of a driver error (or of the one SQLAlchemy wraps), if it has one."""
    original = getattr(error, "orig", None) or error
    state = getattr(original, "sqlstate", None)
    return state if isinstance(state, str) else None


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, on SQLite as on PostgreSQL.

    SQLite drops the offset; this type refuses naive datetimes on the way in and restores
    UTC on the way out, so comparisons never mix naive and aware values.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), uuid.UUID: Uuid(as_uuid=True)}


def table_of(model: type[Base]) -> Table:
    """The ``Table`` a model maps, for Core statements built once at import.

    Declarative types ``__table__`` as any ``FromClause`` (a model may map a join or a
    subquery); every model here maps one table, and this says so where it is relied on.
    """
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} does not map a single table")
    return table


def new_id() -> uuid.UUID:
    """Primary keys are made in Python so SQLite and PostgreSQL behave alike."""
    return uuid.uuid4()


_UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)


def time_ordered_id(now: datetime) -> uuid.UUID:
    """A UUID version 7 (RFC 9562): ``now`` in Unix milliseconds (48 bits), then 74 random
    bits, for the rows of a large table written in time order (messages).

    A random id takes each insert to a random leaf of the primary key's B-tree: in a table
    larger than the buffers a page read in and, after every checkpoint, a whole page in the
    WAL. Ids that rise with time land on the index's newest pages (bench/README.md, "Past one
    database": 3.3 against 0.8 KB of WAL per message in a table of 2,000,000). The id tells
    the millisecond the row was made, which whoever sees a message's id sees beside it (its
    ``created_at``, the audit entry's time); the random bits keep it unguessable.
    """
    # 48 bits of milliseconds last past the year 10000, beyond any ``datetime``.
    milliseconds = (now - _UNIX_EPOCH) // _MILLISECOND
    if milliseconds < 0:
        raise ValueError("a time-ordered id needs a time after 1970")
    random = secrets.randbits(74)
    value = (
        milliseconds << 80
        | 0x7 << 76  # version 7
        | (random >> 62) << 64  # 12 random bits
        | 0b10 << 62  # the RFC 9562 variant
        | random & ((1 << 62) - 1)  # 62 random bits
    )
    return uuid.UUID(int=value)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Foreign keys are off by default in SQLite; WAL lets readers run beside a writer.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
        # pysqlite opens transactions lazily and only for DML; take control. Every unit of
        # work takes the write lock up front (BEGIN IMMEDIATE): a WAL reader that later tries
        # to write after another writer committed would fail at once instead of waiting.
        # SQLite is the single-host development store, so serialising writers costs little.
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _withhold_row_data(context: ExceptionContext) -> None:
    """Cut a PostgreSQL error down to its primary message before anyone formats it.

    The server's ``DETAIL`` repeats the data of the failing statement: "Failing row contains
    (..., Jeanne, ..., \\x2432622431...)" for a NOT NULL violation, the duplicate key for a
    unique one. It is part of the driver exception's text and of SQLAlchemy's wrapper, so
    every logged trace of a failed write would carry a first name and a password hash's
    prefix. The full diagnostic stays on ``orig.diag`` for code that needs it; SQLite's
    messages name only the constraint.
    """
    original = context.original_exception
    primary = getattr(getattr(original, "diag", None), "message_primary", None)
    if not primary or not original.args or not isinstance(original.args[0], str):
        return
    full = original.args[0]
    original.args = (primary,)
    wrapper = context.sqlalchemy_exception
    if wrapper is not None and wrapper.args and isinstance(wrapper.args[0], str):
        wrapper.args = (wrapper.args[0].replace(full, primary), *wrapper.args[1:])


def _discard_stale_sessions(context: ExceptionContext) -> None:
    """Throw away a connection whose session is unusable, so the pool heals by itself.

    SQLAlchemy already discards a connection the driver reports as dropped (and, with it,
    every pooled connection older than the failure). A session PostgreSQL keeps but that can
    no longer work is not "dropped": a connection opened while the role was read-only keeps
    ``default_transaction_read_only`` after the role is restored, and answered 25006 to every
    write until it was killed by hand (issue 13, item 8). Marking such errors as disconnects
    (``STALE_SESSION_SQLSTATES``) invalidates the connection and the
    pool's older ones: the next checkout opens a fresh session with the current settings.
    """
    if not context.is_disconnect and sqlstate_of(context.original_exception) in (
        STALE_SESSION_SQLSTATES
    ):
        context.is_disconnect = True


def server_closed(dbapi_connection: Any) -> bool:
    """Whether PostgreSQL has ended this idle psycopg connection, seen without a round trip.

    An idle connection in the pool expects nothing from the server: a backend that is
    terminated (``pg_terminate_backend``, a restart, a crash, ``idle_session_timeout``) sends
    its FATAL error and closes the socket, which then polls readable. So a readable socket,
    or a connection psycopg or libpq already knows to be closed or broken, means the session
    is gone. The rare readable socket of a live session (a notification, which medchat never
    listens for) costs one new connection, never a wrong answer.
    """
    if dbapi_connection.closed or dbapi_connection.broken:
        return True
    if dbapi_connection.info.status != psycopg.pq.ConnStatus.OK:
        return True  # libpq's own verdict; its socket may be gone already
    poller = select.poll()
    poller.register(dbapi_connection.pgconn.socket, select.POLLIN)
    return bool(poller.poll(0))


def replace_closed_connections(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Checkout hook: a connection the server closed is replaced before anyone uses it.

    This does the job of ``pool_pre_ping`` (a ``SELECT 1`` round trip on every checkout: about
    0.1 ms of CPU in the worker and PostgreSQL together, measured in bench/README.md) at the
    cost of one ``poll``. Raising ``InvalidatePoolError`` makes the pool drop this connection
    and every one older (a server that closed one idle session has usually closed them all),
    and hand out a fresh one. A connection that dies between the check and its first
    statement is the case neither catches: that request gets its 503 and the pool is
    invalidated the same way (``_discard_stale_sessions``, SQLAlchemy's disconnect handling).
    """
    if server_closed(dbapi_connection):
        raise InvalidatePoolError("the server closed this pooled connection")


def postgresql_engine(url: str) -> Engine:
    """An engine on PostgreSQL (psycopg 3) with medchat's pool, its cursors (column
    descriptions made only when read, ``medchat.db_cursor``) and its check of a pooled
    connection at checkout. The bare app of ``bench/`` is built on it too, so the baseline
    has the same settings."""
    engine = create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        hide_parameters=True,
        connect_args={"cursor_factory": ColumnsOnDemandCursor},
    )
    event.listen(engine, "checkout", replace_closed_connections)
    return engine


def make_engine(url: str) -> Engine:
    """Create the engine for a SQLite file or a PostgreSQL (psycopg 3) URL.

    PostgreSQL connections use ``ColumnsOnDemandCursor`` (``postgresql_engine``). A
    pooled PostgreSQL connection the server has closed is replaced on checkout, unseen
    (``replace_closed_connections``), and one that fails in use is discarded
    (``_discard_stale_sessions``).

    Failures never carry the data they were writing, so the error log never does either:
    ``hide_parameters`` keeps a statement's parameters (first names, password hashes, sealed
    fields, token hashes) out of every ``StatementError`` and out of the SQL echo an operator
    turns on to debug, and ``_withhold_row_data`` drops PostgreSQL's ``DETAIL``, which repeats
    them. The statement text and the constraint's name still say what failed.
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            hide_parameters=True,
        )
        _configure_sqlite(engine)
    else:
        engine = postgresql_engine(url)
    event.listen(engine, "handle_error", _withhold_row_data)
    event.listen(engine, "handle_error", _discard_stale_sessions)
    return engine


class Database:
    """The engine and the unit-of-work boundary shared by HTTP requests and the CLI."""

    def __init__(self, url: str, *, info: dict[str, Any] | None = None) -> None:
        """``info`` is copied into every session (the audit MAC key, the clock)."""
        self.url = url
        self.engine = make_engine(url)
        self.info = dict(info or {})
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def session(self) -> Session:
        session = self.sessionmaker()
        session.info.update(self.info)
        return session

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Yield a session; commit if the block succeeds, otherwise undo everything.

        Actions registered with ``on_rollback`` run after an undo, in a transaction of
        their own (used to audit refusals).
        """
        session = self.session()
        try:
            yield session
            session.commit()
        except BaseException:
            self.rollback(session)
            raise
        finally:
            session.close()

    def rollback(self, session: Session) -> None:
        """Undo the session's work, then run its rollback actions in a new transaction."""
        actions: list[RollbackAction] = session.info.pop("on_rollback", [])
        context = session.info.get("audit_context")
        session.rollback()
        if not actions:
            return
        with self.transaction() as fresh:
            if context is not None:
                fresh.info["audit_context"] = context
            for action in actions:
                action(fresh)

    def dispose(self) -> None:
        self.engine.dispose()


def on_rollback(session: Session, action: RollbackAction) -> None:
    """Run ``action`` in a fresh transaction if this session's work is rolled back."""
    session.info.setdefault("on_rollback", []).append(action)


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE run through ``Session.execute`` changed.

    The session returns the driver's ``CursorResult`` (which counts them) for such statements
    but is typed as returning a plain ``Result``; the cast says so once, here.
    """
    return cast("CursorResult[Any]", result).rowcount
