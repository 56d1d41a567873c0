"""Concurrent retention runs (SECURITY-MODEL "Deletion, sealed archive, retention").

Two hosts may start retention at once, and a run meets rotations and members' deletion
requests working on the same rows; none of them may handle an item twice, deadlock, or answer
a server error. Real database, real crypto, concurrent runs in threads, each with its own
sessions: each item is handled exactly once with both chains valid; on PostgreSQL a run skips
the rows another unit of work holds and leaves them for the next run, a deletion request
waiting on a destruction answers not found, and the short lock wait ends with the deletes.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from medchat import audit
from medchat.errors import NotFound
from medchat.services import retention as retention_module
from tests.support.accounts import make_member
from tests.support.archive import records, seal, verify_ledger
from tests.support.audit import audit_entries
from tests.support.retention import (
    ARCHIVE,
    LIVE,
    exists,
    question,
    run,
)
from tests.support.sessions import sign_in


@pytest.fixture
def person(runtime, team):
    return make_member(runtime)


@pytest.fixture
def member(runtime, person):
    return sign_in(runtime, person).principal


@pytest.mark.parametrize("seal_expired", [False, True], ids=["destroy", "seal-first"])
def test_concurrent_runs_handle_each_item_exactly_once(runtime, clock, member, seal_expired):
    """Two runs at once, each in its own thread with its own sessions (PostgreSQL: row locks
    with SKIP LOCKED share the work; SQLite: the write lock makes them take turns)."""
    now = clock.now()
    clock.set(now - ARCHIVE - timedelta(days=1))
    archived = [seal(runtime, member, question(runtime, member, n)) for n in range(4)]
    clock.set(now - LIVE - timedelta(days=1))
    live = [question(runtime, member, n) for n in range(4, 14)]
    # As of now: what retention seals now is not due for archive destruction in the other run.
    clock.set(now)
    as_of = now
    barrier = threading.Barrier(2)
    results, errors = [], []

    def work() -> None:
        try:
            barrier.wait()
            results.append(run(runtime, as_of, batch_size=3, seal_expired=seal_expired))
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    action = "retention.seal" if seal_expired else "retention.destroy"
    per_conversation: dict[str, int] = {}
    for entry in audit_entries(runtime, prefix="retention."):
        if entry.action in (action, "retention.archive_destroy"):
            per_conversation[entry.target_id] = per_conversation.get(entry.target_id, 0) + 1
    expected = {str(r.conversation_id) for r in archived} | {str(i) for i in live}
    assert per_conversation == dict.fromkeys(expected, 1)
    assert sum(r.archive_records_destroyed for r in results) == 4
    live_done = sum(r.conversations_sealed + r.conversations_destroyed for r in results)
    assert live_done == 10
    report = verify_ledger(runtime)
    assert report.ok, report
    assert report.records == 4 + 4 + (10 if seal_expired else 0)
    with runtime.database.transaction() as session:
        assert audit.verify(session, runtime.keys.audit_mac).ok


@pytest.mark.postgresql_only
def test_a_run_leaves_the_rows_another_run_holds_to_it(runtime, clock, member, monkeypatch):
    if not runtime.database.is_postgresql:
        pytest.skip("row locks (FOR UPDATE SKIP LOCKED) are PostgreSQL's; SQLite serialises")
    ids = [question(runtime, member, n) for n in range(6)]
    as_of = clock.now() + LIVE + timedelta(seconds=1)
    real_destroy = retention_module.destroy_unless_busy
    first_holds_its_rows, second_done = threading.Event(), threading.Event()
    results, errors = {}, []

    def holding(session, conversation_ids):
        shredded = real_destroy(session, conversation_ids)
        if threading.current_thread().name == "first" and not first_holds_its_rows.is_set():
            first_holds_its_rows.set()
            assert second_done.wait(30)
        return shredded

    monkeypatch.setattr(retention_module, "destroy_unless_busy", holding)

    def first() -> None:
        try:
            results["first"] = run(runtime, as_of, batch_size=2)
        except BaseException as exc:
            errors.append(exc)
            first_holds_its_rows.set()

    def second() -> None:
        try:
            assert first_holds_its_rows.wait(30)
            results["second"] = run(runtime, as_of, batch_size=2)
        except BaseException as exc:
            errors.append(exc)
        finally:
            second_done.set()

    threads = [threading.Thread(target=first, name="first"), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    # The second run skipped the two rows the first held and did the other four.
    assert results["second"].conversations_destroyed == 4
    assert results["first"].conversations_destroyed == 2
    assert not any(exists(runtime, i) for i in ids)
    targets = [e.target_id for e in audit_entries(runtime, "retention.destroy")]
    assert sorted(targets) == sorted(str(i) for i in ids)


@pytest.mark.postgresql_only
def test_a_conversation_whose_wrap_a_rotation_holds_is_left_for_the_next_run(
    runtime, clock, member
):
    """A rotation deletes a wrap and then inserts its replacement; waiting for that wrap while
    holding the conversation would deadlock with the insert's foreign-key check."""
    if not runtime.database.is_postgresql:
        pytest.skip("row locks are PostgreSQL's; SQLite serialises")
    busy, free = question(runtime, member), question(runtime, member, 1)
    as_of = clock.now() + LIVE + timedelta(seconds=1)
    with runtime.database.engine.connect() as rotation:
        rotation.execute(
            text("SELECT id FROM conversation_key_wraps WHERE conversation_id = :c FOR UPDATE"),
            {"c": busy},
        )
        result = run(runtime, as_of)
        rotation.rollback()

    assert (result.conversations_destroyed, result.skipped_busy) == (1, 1)
    assert exists(runtime, busy) and not exists(runtime, free)
    assert run(runtime, as_of).conversations_destroyed == 1
    assert not exists(runtime, busy)


@pytest.mark.postgresql_only
def test_a_deletion_request_waiting_on_a_destruction_answers_not_found(
    runtime, clock, member, monkeypatch
):
    """The member asks to delete while retention holds the row: after the destruction
    commits, the request finds nothing (404), not a server error."""
    if not runtime.database.is_postgresql:
        pytest.skip("SQLite serialises the two units of work")
    from medchat.services.deletion import DeletionService

    conversation_id = question(runtime, member)
    real_destroy = retention_module.destroy_unless_busy
    holding, release = threading.Event(), threading.Event()
    errors = []

    def slow(session, conversation_ids):
        shredded = real_destroy(session, conversation_ids)
        holding.set()
        assert release.wait(30)
        return shredded

    monkeypatch.setattr(retention_module, "destroy_unless_busy", slow)

    def retention_run() -> None:
        try:
            run(runtime, clock.now() + LIVE + timedelta(seconds=1))
        except BaseException as exc:
            errors.append(exc)
            holding.set()

    thread = threading.Thread(target=retention_run)
    thread.start()
    assert holding.wait(30)
    timer = threading.Timer(1.0, release.set)  # commit while the request waits on the lock
    timer.start()
    with pytest.raises(NotFound), runtime.database.transaction() as session:
        DeletionService(session, runtime).delete_own(member, conversation_id)
    thread.join(30)
    assert errors == []
    assert not exists(runtime, conversation_id)
    assert records(runtime) == []


@pytest.mark.postgresql_only
def test_the_short_lock_wait_ends_with_the_deletes(runtime, clock, member):
    """The ledger and audit heads appended after the deletes are waited for as long as it
    takes: the 300 ms lock timeout must not outlive the deletes it guards."""
    if not runtime.database.is_postgresql:
        pytest.skip("lock_timeout is PostgreSQL's")
    from medchat.services.shredding import destroy_unless_busy

    conversation_id = question(runtime, member)
    with runtime.database.transaction() as session:
        default = session.execute(text("SHOW lock_timeout")).scalar_one()
        session.execute(
            text("SELECT id FROM conversations WHERE id = :id FOR UPDATE"), {"id": conversation_id}
        )
        shredded, busy = destroy_unless_busy(session, [conversation_id])
        assert (set(shredded), busy) == ({conversation_id}, set())
        assert session.execute(text("SHOW lock_timeout")).scalar_one() == default
    assert not exists(runtime, conversation_id)
