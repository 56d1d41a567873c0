"""``medchat.db_driver.outside_transaction``: a plain read on a connection with no
transaction open opens none (no ``BEGIN``, and nothing for a ``COMMIT`` to close), and
everything after it that writes is still one transaction; ``require_plain_read`` says which
statements may run that way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import (
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from medchat.db import make_engine
from medchat.db_driver import (
    READING_FUNCTIONS,
    DriverStatement,
    outside_transaction,
    read_outside_transaction,
    require_plain_read,
)
from tests.support.db_driver import driver_statements

IDLE, INTRANS = TransactionStatus.IDLE, TransactionStatus.INTRANS


class _Base(DeclarativeBase):
    metadata = MetaData()


class _Note(_Base):
    __tablename__ = "driver_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(32))


_notes = _Note.__table__
assert isinstance(_notes, Table)
_COUNT_NOTES = select(func.count()).select_from(_notes)


def _count(*, outside: bool = True) -> DriverStatement:
    """Made in the test that runs it (not at import), so the flag's keeping is tested too."""
    return DriverStatement(_COUNT_NOTES, outside_transaction=outside)


def _divide() -> DriverStatement:
    by = bindparam("by", type_=Integer)
    return DriverStatement(select(literal(1, Integer) / by), outside_transaction=True)


@pytest.fixture
def connection(database_url: str) -> Iterator[Connection]:
    engine = make_engine(database_url)
    with engine.begin() as setup:
        _Base.metadata.create_all(setup)
    with engine.connect() as connection:
        yield connection
    with engine.begin() as teardown:
        _Base.metadata.drop_all(teardown)
    engine.dispose()


def _postgresql(connection: Connection) -> None:
    if connection.dialect.name != "postgresql":
        pytest.skip("psycopg's transactions; SQLite's are the unit of work's")


def _status(connection: Connection) -> TransactionStatus:
    return TransactionStatus(connection.connection.dbapi_connection.info.transaction_status)


def _autocommit(connection: Connection) -> bool:
    return bool(connection.connection.dbapi_connection.autocommit)


def _notes_seen_elsewhere(connection: Connection) -> int:
    with connection.engine.connect() as other:
        return int(other.scalar(select(func.count()).select_from(_notes)))


def test_a_plain_read_opens_no_transaction(connection):
    _postgresql(connection)
    assert _count().all(connection, {}) == [(0,)]
    assert _status(connection) is IDLE and not _autocommit(connection)
    # The same statement without the flag opens one, as psycopg does for any statement.
    assert _count(outside=False).all(connection, {}) == [(0,)]
    assert _status(connection) is INTRANS


def test_what_writes_after_it_is_still_one_transaction(connection):
    _postgresql(connection)
    _count().all(connection, {})
    connection.execute(insert(_notes), [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}])
    assert _status(connection) is INTRANS
    assert _notes_seen_elsewhere(connection) == 0  # not committed by the read's mode
    connection.rollback()
    assert _count().all(connection, {}) == [(0,)]


def test_in_a_transaction_it_reads_in_it(connection):
    _postgresql(connection)
    connection.execute(insert(_notes), {"id": 1, "text": "a"})
    # Sees the transaction's own write, and leaves the transaction as it was.
    assert _count().all(connection, {}) == [(1,)]
    assert _status(connection) is INTRANS and not _autocommit(connection)
    connection.rollback()
    assert _notes_seen_elsewhere(connection) == 0


def test_a_connection_in_autocommit_stays_so(connection):
    _postgresql(connection)
    autocommitting = connection.execution_options(isolation_level="AUTOCOMMIT")
    assert _count().all(autocommitting, {}) == [(0,)]
    assert _autocommit(autocommitting)


def test_a_failed_read_leaves_the_connection_to_its_transactions(connection):
    _postgresql(connection)
    with pytest.raises(DBAPIError, match="division by zero"):
        _divide().all(connection, {"by": 0})
    assert _status(connection) is IDLE and not _autocommit(connection)
    connection.execute(insert(_notes), {"id": 1, "text": "a"})
    connection.rollback()
    assert _notes_seen_elsewhere(connection) == 0


def test_a_connection_left_in_a_transaction_by_the_block_is_invalidated(connection):
    """What the block leaves other than idle (a statement broke the connection, an explicit
    ``BEGIN``) may not go back to the pool in autocommit mode."""
    _postgresql(connection)
    dbapi = connection.connection.dbapi_connection
    with outside_transaction(connection):
        dbapi.execute("BEGIN")
    assert connection.invalidated
    # The next use gets another connection, out of autocommit.
    assert _count(outside=False).all(connection, {}) == [(0,)]
    assert not _autocommit(connection)


def test_elsewhere_the_block_runs_as_it_is(connection):
    if connection.dialect.name == "postgresql":
        pytest.skip("the other databases: SQLite")
    with outside_transaction(connection):
        assert connection.scalar(select(func.count()).select_from(_notes)) == 0
    assert _count().all(connection, {}) == [(0,)]


def test_through_the_orm_unwritten_work_is_flushed_first_in_a_transaction(connection):
    session = Session(bind=connection)
    session.add(_Note(id=1, text="pending"))
    rows = read_outside_transaction(session, select(_Note), {})
    assert [note.text for (note,) in rows] == ["pending"]
    if connection.dialect.name == "postgresql":
        assert _status(connection) is INTRANS
    session.rollback()
    assert _notes_seen_elsewhere(connection) == 0


def test_through_the_orm_a_clean_session_opens_no_transaction(connection):
    connection.execute(insert(_notes), {"id": 7, "text": "kept"})
    connection.commit()
    session = Session(bind=connection)
    statement = select(_Note, func.coalesce(func.max(_notes.c.id), 0)).group_by(_Note.id)
    rows = read_outside_transaction(session, statement, {})
    assert [(note.id, note.text, top) for note, top in rows] == [(7, "kept", 7)]
    if connection.dialect.name == "postgresql":
        assert _status(connection) is IDLE and not _autocommit(connection)
    with pytest.raises(ArgumentError, match=_LOCKS):
        read_outside_transaction(session, select(_Note).with_for_update(), {})
    by_id = select(_Note.text).where(_Note.id == bindparam("id", type_=Integer))
    assert read_outside_transaction(session, by_id, {"id": 7}) == [("kept",)]


_LOCKS = "^a statement that locks rows runs in a transaction$"
_WRITES = "^a statement that writes runs in a transaction$"
_NOT_SELECT = "^only a SELECT runs outside a transaction$"
_TEXT = "^SQL text cannot be checked: it runs in a transaction$"
_REFUSED = {
    "a row lock": (select(_notes.c.id).with_for_update(), _LOCKS),
    "a skipping lock": (select(_notes.c.id).with_for_update(skip_locked=True), _LOCKS),
    "a lock in a subquery": (
        select(_notes.c.id).where(
            _notes.c.id.in_(select(_notes.c.id).with_for_update().scalar_subquery())
        ),
        _LOCKS,
    ),
    "a write in a CTE": (
        select(update(_notes).values(text="x").returning(_notes.c.id).cte("changed").c.id),
        _WRITES,
    ),
    "an INSERT": (insert(_notes), _NOT_SELECT),
    "a DELETE": (delete(_notes), _NOT_SELECT),
    "SQL text": (select(text("1")), _TEXT),
    "a literal column": (select(literal_column("pg_advisory_xact_lock(1)")), _TEXT),
    "a sequence": (
        select(func.nextval("audit_entry_seq")),
        r"^nextval\(\) is not known to only read$",
    ),
    "an advisory lock": (
        select(func.pg_advisory_xact_lock(1)),
        r"^pg_advisory_xact_lock\(\) is not known to only read$",
    ),
    "the transaction's time": (select(func.now()), r"^now\(\) is not known to only read$"),
}


@pytest.mark.parametrize("statement, reason", _REFUSED.values(), ids=_REFUSED.keys())
def test_what_is_not_a_plain_read_is_refused(statement, reason):
    with pytest.raises(ArgumentError, match=reason):
        require_plain_read(statement)
    if isinstance(statement, type(select())):
        with pytest.raises(ArgumentError, match=reason):
            DriverStatement(statement, outside_transaction=True)
    DriverStatement(statement)  # in a transaction, anything


def test_reads_with_the_functions_that_only_read_are_plain_reads():
    uses = [getattr(func, name)(_notes.c.id) for name in sorted(READING_FUNCTIONS)]
    require_plain_read(select(*uses))
    require_plain_read(select(exists().where(_notes.c.id == bindparam("id", type_=Integer))))


def test_the_hot_reads_run_outside_a_transaction_and_nothing_that_writes_does():
    flagged = {name for name, s in driver_statements().items() if s.outside_transaction}
    assert {
        "medchat.identity.tokens._CHECK",
        "medchat.services.conversation_access._CHECKS[False]",
        "medchat.services.message_views._PAGES[(False, False)]",
        "medchat.services.message_views._PAGES[(False, True)]",
        "medchat.services.message_views._PAGES[(True, False)]",
        "medchat.services.message_views._PAGES[(True, True)]",
        # The token and a page read's row check in one statement.
        "medchat.services.request_checks._STATEMENTS[False]",
    } == flagged
    for name in flagged:
        require_plain_read(driver_statements()[name].statement)
