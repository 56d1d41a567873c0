"""``medchat.db_driver``: a statement run through psycopg gives what ``Connection.execute``
gives (rows, value types, errors, cursor events), and every driver statement of the code is
compiled as SQLAlchemy would run it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Uuid,
    bindparam,
    create_engine,
    event,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import ArgumentError, IntegrityError, InvalidRequestError, StatementError

from medchat.db import Base, UtcDateTime, make_engine
from medchat.db_driver import DriverStatement, _plan
from medchat.models.integrity import integrity_of
from tests.support.db_driver import driver_statements

_metadata = MetaData()
_things = Table(
    "driver_things",
    _metadata,
    Column("id", Uuid(as_uuid=True), primary_key=True),
    Column("n", Integer, nullable=False),
    Column("big", BigInteger),
    Column("name", String(16), unique=True),
    Column("blob", LargeBinary),
    Column("flag", Boolean),
    Column("at", UtcDateTime()),
    # A type whose result processor depends on the driver's type code (psycopg's numeric).
    Column("price", Numeric(8, 2, asdecimal=False)),
    prefixes=["TEMPORARY"],
)
#: Every column, a literal of the statement's own and a bound value of each kind.
_ALL = select(
    _things.c.id,
    _things.c.n,
    _things.c.big,
    _things.c.name,
    _things.c.blob,
    _things.c.flag,
    _things.c.at,
    _things.c.price,
    literal(7).label("seven"),
).where(
    _things.c.n >= bindparam("least", type_=Integer),
    _things.c.at <= bindparam("until", type_=UtcDateTime()),
    _things.c.name != "never",
)
_INSERT = insert(_things).returning(_things.c.id)
_PG = create_engine("postgresql+psycopg://", connect_args={}).dialect


@pytest.fixture
def connection(database_url: str) -> Iterator[Connection]:
    engine = make_engine(database_url)
    with engine.connect() as connection:
        _metadata.create_all(connection)
        yield connection
    engine.dispose()


def _thing(i: int, **values: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "n": i,
        "big": 2**40 + i,
        "name": f"thing {i}",
        "blob": bytes([i]) * 5,
        "flag": i % 2 == 0,
        "at": datetime(2026, 12, 6, 9, 0, tzinfo=UTC) + timedelta(minutes=i),
        "price": 10.25 + i,
        **values,
    }


def _fill(connection: Connection, count: int = 3) -> None:
    for i in range(count):
        connection.execute(_INSERT, _thing(i))


def _typed(rows: Any) -> list[list[tuple[type, Any]]]:
    return [[(type(value), value) for value in row] for row in rows]


def test_rows_and_their_types_are_what_sqlalchemy_returns(connection):
    _fill(connection)
    if connection.dialect.name == "postgresql":
        # A zone of the session's own: only the column type's processor gives UTC back.
        connection.exec_driver_sql("SET TIME ZONE 'Europe/Paris'")
    params = {"least": 1, "until": datetime(2027, 1, 1, tzinfo=UTC)}

    driver = DriverStatement(_ALL)
    mine = driver.all(connection, params)
    theirs = connection.execute(_ALL, params).all()

    assert len(mine) == 2
    assert _typed(mine) == _typed(theirs)
    assert all(row[6].tzinfo is UTC for row in mine)
    assert [row[7] for row in mine] == [11.25, 12.25]


def test_a_statement_is_compiled_once_per_dialect(connection):
    driver = DriverStatement(_ALL)
    params = {"least": 0, "until": datetime.now(UTC)}
    driver.all(connection, params)
    first = dict(driver._plans)

    driver.all(connection, params)

    if connection.dialect.name == "postgresql":
        assert list(first) == [connection.dialect]
        assert driver._plans[connection.dialect] is first[connection.dialect]
    else:  # SQLAlchemy runs it, from its own compiled cache
        assert first == {}


def test_a_bound_value_goes_through_its_type(connection):
    _fill(connection)
    naive = {"least": 0, "until": datetime(2027, 1, 1)}

    with pytest.raises(Exception, match="naive datetime"):
        DriverStatement(_ALL).all(connection, naive)


def test_an_insert_returns_its_row_and_a_page_holds_at_most_one(connection):
    values = _thing(5)

    assert DriverStatement(_INSERT).one_or_none(connection, values) == (values["id"],)
    assert (
        DriverStatement(select(_things.c.id).where(_things.c.n == 6)).one_or_none(connection, {})
        is None
    )
    connection.execute(_INSERT, _thing(6))
    with pytest.raises(ArgumentError, match=r"^a driver statement expected at most one row$"):
        DriverStatement(select(_things.c.id)).one_or_none(connection, {})


def test_a_statement_sent_without_reading_is_written(connection):
    DriverStatement(insert(_things)).send(connection, _thing(1, name="sent"))

    assert connection.execute(select(_things.c.name)).scalar_one() == "sent"


def test_a_missing_parameter_is_refused_before_anything_is_sent(connection):
    sent: list[str] = []
    event.listen(connection.engine, "before_cursor_execute", lambda *a: sent.append(a[2]))

    with pytest.raises(StatementError, match="required for bind parameter 'until'") as raised:
        DriverStatement(_ALL).all(connection, {"least": 1})

    assert sent == []
    assert "driver_things" in str(raised.value.statement)
    assert isinstance(raised.value.orig, InvalidRequestError)
    assert "A value is required for bind parameter 'until'" in str(raised.value.orig)


def test_cursor_events_see_every_statement_with_its_parameters(connection):
    seen: list[tuple[Any, ...]] = []
    engine = connection.engine
    before = lambda *args: seen.append(("before", *args))  # noqa: E731
    after = lambda *args: seen.append(("after", *args))  # noqa: E731
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        DriverStatement(_ALL).all(connection, {"least": 3, "until": datetime.now(UTC)})
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)

    assert [args[0] for args in seen] == ["before", "after"]
    for _when, conn, cursor, statement, params, context, executemany in seen:
        assert conn is connection
        assert cursor is seen[0][2]
        assert cursor is not None
        assert "driver_things" in statement
        assert executemany is False
        if connection.dialect.name == "postgresql":
            # The driver ran it: no SQLAlchemy execution context, psycopg's named parameters.
            assert context is None
            assert params["least"] == 3
        else:  # SQLAlchemy ran it, with SQLite's positional parameters
            assert context is not None
            assert 3 in params


def test_a_failed_statement_is_sqlalchemys_error_through_the_engines_hooks(connection):
    _fill(connection, 1)
    duplicate = _thing(1, name="thing 0")
    cursors: list[Any] = []
    keep = lambda conn, cursor, *_: cursors.append(cursor)  # noqa: E731
    event.listen(connection.engine, "before_cursor_execute", keep)

    with pytest.raises(IntegrityError) as raised:
        DriverStatement(_INSERT).one_or_none(connection, duplicate)

    event.remove(connection.engine, "before_cursor_execute", keep)
    if connection.dialect.name == "postgresql":
        # SQLAlchemy's handling closed the cursor the failed statement ran on.
        assert cursors[0].closed
    message = str(raised.value)
    # hide_parameters and _withhold_row_data: neither the values nor the DETAIL repeating them.
    assert "thing 0" not in message
    assert "parameters hidden" in message


def test_an_engine_that_echoes_runs_the_statement_through_sqlalchemy(database_url):
    contexts: list[Any] = []
    engine = make_engine(database_url)
    engine.echo = True
    event.listen(engine, "before_cursor_execute", lambda *a: contexts.append(a[4]))
    with engine.connect() as connection:
        _metadata.create_all(connection)
        contexts.clear()
        DriverStatement(select(_things.c.id)).all(connection, {})
    engine.dispose()

    assert len(contexts) == 1
    assert contexts[0] is not None


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        (
            select(_things.c.id).where(_things.c.n.in_(bindparam("ns", expanding=True))),
            "a driver statement is rendered once: no expanding parameters",
        ),
        (
            select(_things.c.id).where(_things.c.n == bindparam("n", callable_=lambda: 1)),
            "a driver statement takes no computed parameters",
        ),
        (
            select(_things.c.id).where(_things.c.name == bindparam("a name")),
            "a driver statement's parameter names need no escaping",
        ),
        (
            select(_things.c.id).where(_things.c.n == bindparam("n", unique=True)),
            r"parameter '%\(\d+ n\)s' is compiled as 'n_1'",
        ),
    ],
)
def test_a_statement_that_must_be_rendered_per_execution_is_refused(statement, reason):
    with pytest.raises(ArgumentError, match=f"^{reason}$"):
        _plan(statement, _PG)


def test_a_dialect_of_positional_parameters_is_refused():
    positional = create_engine("postgresql+psycopg://", paramstyle="format").dialect

    with pytest.raises(ArgumentError, match=r"^a driver statement needs named parameters$"):
        _plan(select(_things.c.id), positional)


def test_every_driver_statement_is_compiled_as_sqlalchemy_runs_it():
    statements = driver_statements()
    # The hot paths' statements are among them (a search that finds nothing proves nothing).
    assert {
        "medchat.identity.tokens._CHECK",
        "medchat.services.message_views._PAGES[(False, False)]",
        "medchat.services.message_append._APPEND",
        "medchat.services.message_append._APPEND_AND_TAKE_HEAD",
        "medchat.audit.heads._LOCK_FREE_HEAD_AND_NUMBER",
        "medchat.audit.chain._INSERT_ONE_AND_MOVE_HEAD",
    } <= set(statements)
    for name, driver in statements.items():
        plan = _plan(driver.statement, _PG)
        compiled: Any = driver.statement.compile(dialect=_PG)
        assert plan.sql == compiled.string, name
        assert {bound for bound, _ in plan.binds} == set(compiled._bind_processors), name
        assert plan.required | set(plan.defaults) == set(compiled.bind_names.values()), name
        assert compiled.construct_params(dict.fromkeys(plan.required)) == {
            **plan.defaults,
            **dict.fromkeys(plan.required),
        }, name


def test_psycopg_keeps_every_driver_statement_parsed():
    """psycopg turns a statement's named placeholders into PostgreSQL's once and keeps the
    result, but only for a statement of at most 4,096 characters and 50 parameters: a longer
    one is parsed again at every execution (the combined token and row check of a send cost
    the request thread 240 us more than its two statements apart, at 4,678 characters).
    Every driver statement runs on a hot path: each stays within both."""
    from psycopg import _queries

    for name, driver in driver_statements().items():
        plan = _plan(driver.statement, _PG)
        assert len(plan.sql) <= _queries.MAX_CACHED_STATEMENT_LENGTH, name
        assert len(plan.required) + len(plan.defaults) <= _queries.MAX_CACHED_STATEMENT_PARAMS


def test_the_chains_array_and_a_text_column_go_through_the_driver(connection):
    if connection.dialect.name != "postgresql":
        pytest.skip("arrays are PostgreSQL's")
    statement = select(bindparam("names", type_=ARRAY(String())), text("42 AS answer"))

    assert DriverStatement(statement).all(connection, {"names": ["a", "b"]}) == [(["a", "b"], 42)]


#: Every mapped model by its table's name.
_MODELS = {mapper.class_.__tablename__: mapper.class_ for mapper in Base.registry.mappers}


def _tagged_reads(statement: Any) -> dict[str, set[str]]:
    """The tagged tables whose deciding columns a statement returns, and which of them: rows
    of columns are not loaded as objects, so the ORM's check never sees them."""
    reads: dict[str, set[str]] = {}
    for selected in getattr(statement, "selected_columns", ()):
        # A subquery's column (a LATERAL's too) is read from the table column it proxies.
        for column in selected.proxy_set:
            table = getattr(column, "table", None)
            model = _MODELS.get(getattr(table, "name", None))
            spec = integrity_of(model) if model is not None else None
            if spec is not None and spec.kind == "tagged" and column.name in spec.columns:
                reads.setdefault(table.name, set()).add(column.name)
    return reads


def test_every_driver_read_of_tagged_columns_verifies_them():
    """A driver statement that returns a tagged table's deciding columns hands the server rows
    no load event checks: each must call ``verify_columns`` on them, and is listed here with
    the test that alters every such column and sees the read refused. A new one fails here
    until it does and is tested."""
    verified = {
        # tests/security/test_planted_instructions.py: a planted token row, an account's
        # role and status altered under a live token
        "medchat.identity.tokens._CHECK": {"auth_tokens", "accounts"},
        # tests/unit/services/test_conversation_row_check.py
        "medchat.services.conversation_access._CHECKS[False]": {"conversation_key_epochs"},
        "medchat.services.conversation_access._CHECKS[True]": {"conversation_key_epochs"},
        # The token check and the row check in one statement: tests/api/test_request_checks.py
        # (every token and account column altered) and test_conversation_row_check.py (every
        # epoch column altered, read with the token)
        "medchat.services.request_checks._STATEMENTS[False]": {
            "auth_tokens",
            "accounts",
            "conversation_key_epochs",
        },
        "medchat.services.request_checks._STATEMENTS[True]": {
            "auth_tokens",
            "accounts",
            "conversation_key_epochs",
        },
    }
    found = {
        name: set(reads)
        for name, driver in driver_statements().items()
        if (reads := _tagged_reads(driver.statement))
    }
    assert found == verified
    # What it finds is the deciding columns themselves: the row check reads every one.
    check = driver_statements()["medchat.services.conversation_access._CHECKS[False]"]
    spec = integrity_of(_MODELS["conversation_key_epochs"])
    assert spec is not None
    assert _tagged_reads(check.statement)["conversation_key_epochs"] == set(spec.columns)
    # Also through the LATERAL subquery the combined read holds them in.
    combined = driver_statements()["medchat.services.request_checks._STATEMENTS[True]"]
    assert _tagged_reads(combined.statement)["conversation_key_epochs"] == set(spec.columns)
