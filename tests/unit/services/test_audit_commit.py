"""How an append meets the commit: few statements under the chain head lock, audit fails closed.

The head row lock serialises every writer of the chain, so what runs while it is held decides
how many units of work can commit per second: the head is read with ``SELECT ... FOR UPDATE``,
the entries and the new head are written (one statement for one entry on PostgreSQL), and on
PostgreSQL those writes travel to the server in one pipeline with the ``COMMIT``. A failure
anywhere in that pipeline still undoes the whole unit of work.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError

from medchat import audit
from medchat.audit import heads
from medchat.audit.heads import chain_name
from medchat.models import AuditEntry, ChainHead
from tests.support.audit import verify, write_entries
from tests.support.plans import plans_after


@pytest.fixture
def app(make_app):
    """One chain: these tests count the statements and positions of a single head."""
    return make_app(audit_chains=1)


def _sql(runtime, work) -> list[tuple[str, bool]]:
    """(statement, ran inside a psycopg pipeline) of each statement ``work`` sends."""
    seen: list[tuple[str, bool]] = []

    def log(conn, cursor, statement, *args) -> None:
        driver = conn.connection.driver_connection
        pgconn = getattr(driver, "pgconn", None)
        seen.append((statement, bool(pgconn and pgconn.pipeline_status)))

    engine = runtime.database.engine
    event.listen(engine, "before_cursor_execute", log)
    try:
        work()
    finally:
        event.remove(engine, "before_cursor_execute", log)
    return [item for item in seen if item[0].split()[0].upper() != "BEGIN"]


def _statements(runtime, work) -> list[tuple[str, bool]]:
    """(first word, ran inside a psycopg pipeline) of each statement ``work`` sends."""
    return [(sql.split()[0].upper(), piped) for sql, piped in _sql(runtime, work)]


def test_one_entry_is_a_head_lock_and_one_write(runtime):
    single = _statements(runtime, lambda: write_entries(runtime, 1))
    batch = _statements(runtime, lambda: write_entries(runtime, 3, per_transaction=3))

    words = [word for word, _ in single]
    if runtime.database.is_postgresql:
        assert words == ["WITH", "WITH"]  # the head lock (a CTE); the entry and the new head
    else:
        assert words == ["SELECT", "INSERT", "UPDATE"]
    lock = "WITH" if runtime.database.is_postgresql else "SELECT"
    assert [word for word, _ in batch] == [lock, "INSERT", "UPDATE"]
    assert verify(runtime).ok


def test_on_postgresql_one_entry_draws_its_number_without_a_series(runtime):
    """One entry's head lock is the statement PostgreSQL plans once (the next test)."""
    if not runtime.database.is_postgresql:
        pytest.skip("SQLite has no sequences: the highest seq is read under its write lock")
    single = _sql(runtime, lambda: write_entries(runtime, 1))[0][0]
    batch = _sql(runtime, lambda: write_entries(runtime, 3, per_transaction=3))[0][0]
    two = _sql(runtime, lambda: write_entries(runtime, 2, per_transaction=2))[0][0]
    assert "ARRAY[nextval('audit_entry_seq')]" in single and "generate_series" not in single
    assert "generate_series" in batch and two == batch
    # Both take the first head no other commit holds (a batch too, not the drawn one's wait).
    assert "SKIP LOCKED" in single and "SKIP LOCKED" in batch
    entries = runtime.database.engine.connect()
    with entries:
        numbers = entries.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)).all()
    assert len(numbers) == 6 == len(set(numbers))
    assert verify(runtime).ok


def test_on_postgresql_the_one_entry_head_lock_is_planned_once_per_connection(runtime):
    """A set-returning function of a parameter (``generate_series(1, :entries)``) is priced
    at 1,000 rows in a generic plan, so PostgreSQL plans that statement again at every
    execution; the one-entry statement gets its generic plan after psycopg prepares it."""
    if not runtime.database.is_postgresql:
        pytest.skip("prepared statements and their plans are PostgreSQL's")
    engine = runtime.database.engine
    chains = [chain_name(0)]
    plans = {
        name: plans_after(engine, statement.statement, {"chains": chains, **given}, marker)
        for name, statement, given, marker in (
            ("one", heads._LOCK_FREE_HEAD_AND_ONE_NUMBER, {}, "ARRAY[nextval("),
            ("several", heads._LOCK_FREE_HEAD_AND_NUMBER, {"entries": 2}, "generate_series"),
        )
    }
    assert len(plans["one"]) == 1 and plans["one"][0][0] >= 1
    assert plans["several"] == [(0, 8)]


def test_on_postgresql_the_chain_writes_share_one_round_trip_with_the_commit(runtime, tmp_path):
    if not runtime.database.is_postgresql:
        pytest.skip("psycopg pipelines are PostgreSQL's; SQLite commits in process")
    trace = tmp_path / "libpq.trace"
    statements: list[tuple[str, bool]] = []

    def work() -> None:
        with trace.open("w") as sink, runtime.database.transaction() as session:
            audit.record(session, "test.pipelined", target_type="thing", target_id="t-1")
            driver = session.connection().connection.driver_connection
            driver.pgconn.trace(sink.fileno())
            session.commit()
            driver.pgconn.untrace()

    statements = _statements(runtime, work)

    # The head lock answers on its own (the hashes need it); the write waits for the COMMIT.
    assert statements == [("WITH", False), ("WITH", True)]
    sent = [line.split("\t") for line in trace.read_text().splitlines()]
    # A round trip ends where the client waits for ReadyForQuery: after a Sync or a Query.
    asked = [f for f in sent if f[1:2] == ["F"] and f[3:4] in (["Sync"], ["Query"])]
    answered = [f for f in sent if f[1:2] == ["B"] and f[3:4] == ["ReadyForQuery"]]
    # BEGIN, the head lock, then the write with the COMMIT (four without the pipeline).
    assert len(asked) == len(answered) == 3
    with runtime.database.engine.connect() as other:  # committed: another connection sees it
        assert other.scalar(select(func.count()).where(AuditEntry.action == "test.pipelined")) == 1
    assert verify(runtime).ok


def test_a_failed_chain_write_undoes_the_whole_unit_of_work(runtime):
    write_entries(runtime, 2)
    # A database writer takes the next sequence number: the append's INSERT collides with it.
    with runtime.database.transaction() as session:
        planted = session.execute(select(AuditEntry).where(AuditEntry.seq == 2)).scalar_one()
        session.execute(
            text(
                "INSERT INTO audit_entries (seq, id, at, action, outcome, details, prev_hash,"
                " entry_hash, mac, chain, position)"
                " VALUES (3, :id, :at, 'planted', 'success', '{}', :h, :e, :m, 'audit', 3)"
            ),
            {
                "id": "00000000-0000-4000-8000-000000000003",
                "at": planted.at,
                "h": planted.entry_hash,
                "e": b"\x01" * 32,
                "m": b"\x02" * 32,
            },
        )

    with pytest.raises(IntegrityError), runtime.database.transaction() as session:
        session.add(ChainHead(chain="other", seq=7, entry_hash=b"\0" * 32, mac=b"\0" * 32))
        audit.record(session, "test.lost", target_type="thing", target_id="t-2")

    with runtime.database.transaction() as session:
        assert session.get(ChainHead, "other") is None  # the change went with the entry
        assert session.get(ChainHead, audit.AUDIT_CHAIN).seq == 2
        assert session.scalar(select(func.count()).where(AuditEntry.action == "test.lost")) == 0
        session.execute(text("DELETE FROM audit_entries WHERE seq = 3"))
    write_entries(runtime, 1)  # the pool's connections are usable again
    assert verify(runtime).ok
