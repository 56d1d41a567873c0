"""Retention by crypto-shredding (SECURITY-MODEL "Deletion, sealed archive, retention",
"Audit", "Transparency").

Real database, real crypto, an injected clock: conversations are made through the service
building blocks, sealed through the deletion service, and what retention leaves behind is read
as raw rows. Each rule has a test that fails when the rule is broken: the exact boundaries of
both periods, every row and wrap gone, both chains valid, one audit entry per item with the
member as subject, a batch that fails leaving nothing, idempotence, a dry run changing
nothing, seal-first mode, altered archive content left as evidence, and concurrent runs
(threads, each with its own sessions) handling each item exactly once.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from medchat import audit
from medchat.archive import ledger
from medchat.errors import Conflict, NotFound
from medchat.models import ChainHead, Holder
from medchat.services import retention as retention_module
from medchat.services.archive_records import ArchiveRecordService
from medchat.services.conversation_access import ConversationAccess
from medchat.services.retention import DueKind, EarlyDestruction, RetentionService
from medchat.services.retrieval import RetrievalService
from tests.support.accounts import bearer, login, make_member
from tests.support.archive import archive_colleague, flip_byte, records, seal, verify_ledger
from tests.support.audit import audit_entries
from tests.support.conversations import add_attachment, start_conversation
from tests.support.messaging import care_team
from tests.support.retention import (
    PER_CONVERSATION,
    add_live_traces,
    every_stored_value,
    run,
    stored_bytes,
    stored_rows,
    table_snapshot,
    wrap_holders,
)
from tests.support.sessions import sign_in

SUBJECT = "Retention canary subject R2"
BODIES = ["Retention canary question R2: my ankle", "Retention canary follow-up R2"]
FILE_NAME = "retention-canary-R2.pdf"
LIVE = timedelta(days=730)
ARCHIVE = timedelta(days=3650)
#: Nothing left in any table that belongs to a conversation (derived from the metadata).
GONE = dict.fromkeys([*PER_CONVERSATION, "idempotency_records"], 0)


@pytest.fixture
def team(runtime):
    return care_team(runtime)


@pytest.fixture
def person(runtime, team):
    return make_member(runtime)


@pytest.fixture
def member(runtime, person):
    return sign_in(runtime, person).principal


def question(runtime, member, n: int = 0) -> uuid.UUID:
    """A conversation asked now (the clock's time): subject, two messages, one attachment."""
    started = start_conversation(
        runtime, member, subject=f"{SUBJECT} #{n}", bodies=[f"{b} #{n}" for b in BODIES]
    )
    add_attachment(
        runtime,
        started.id,
        started.message_ids[0],
        started.dek,
        filename=FILE_NAME,
        content_type="application/pdf",
        data=b"%PDF-1.7\nretention canary\n%%EOF\n",
    )
    return started.id


def exists(runtime, conversation_id) -> bool:
    return stored_rows(runtime, conversation_id)["conversations"] == 1


def test_a_question_older_than_the_period_goes_and_one_on_the_boundary_stays(
    runtime, clock, member
):
    start = clock.now()
    ids = []
    for n in range(3):  # asked at start, start + 1 s, start + 2 s
        ids.append(question(runtime, member, n))
        clock.advance(seconds=1)
    boundary = start + timedelta(seconds=1)

    result = run(runtime, boundary + LIVE)

    assert result.counts() == {
        "conversations_destroyed": 1,
        "conversations_sealed": 0,
        "archive_records_destroyed": 0,
    }
    # One second before the boundary: destroyed. On it and one second after: kept.
    assert [exists(runtime, i) for i in ids] == [False, True, True]


def test_the_injected_clock_decides_when_no_time_is_given(runtime, clock, member):
    asked_at = clock.now()
    conversation_id = question(runtime, member)

    clock.set(asked_at + LIVE)
    assert run(runtime).conversations_destroyed == 0
    assert exists(runtime, conversation_id)

    clock.advance(seconds=1)
    assert run(runtime).conversations_destroyed == 1
    assert not exists(runtime, conversation_id)


def test_the_period_is_the_configured_one(make_app, clock):
    runtime = make_app(retention_days=30).extensions["medchat"]
    care_team(runtime)
    member = sign_in(runtime, make_member(runtime)).principal
    asked_at = clock.now()
    conversation_id = question(runtime, member)

    assert run(runtime, asked_at + timedelta(days=30)).conversations_destroyed == 0
    assert run(runtime, asked_at + timedelta(days=30, seconds=1)).conversations_destroyed == 1
    assert not exists(runtime, conversation_id)


def test_destroying_leaves_no_ciphertext_and_no_wrap_of_any_holder(runtime, clock, team, member):
    conversation_id = question(runtime, member)
    add_live_traces(runtime, conversation_id, member, team.clinician.id)
    clock.advance(days=1)
    kept = question(runtime, member, 1)
    add_live_traces(runtime, kept, member, team.clinician.id)
    assert wrap_holders(runtime, conversation_id) == ["archive_gated", "member", "physician"]
    secrets = stored_bytes(runtime, conversation_id)
    assert len(secrets) >= 7  # subject, 2 bodies, file name, type, data, 3 wraps
    kept_before = stored_rows(runtime, kept)

    run(runtime, clock.now() - timedelta(hours=12) + LIVE)

    assert stored_rows(runtime, conversation_id) == GONE
    remaining = every_stored_value(runtime)
    assert not [s for s in secrets if s in remaining]
    # The conversation asked a day later keeps every row.
    assert stored_rows(runtime, kept) == kept_before
    assert wrap_holders(runtime, kept) == ["archive_gated", "member", "physician"]


def test_a_destroyed_conversation_is_gone_for_member_and_clinician(
    client, runtime, clock, team, member
):
    conversation_id = question(runtime, member)
    clinician = sign_in(runtime, team.clinician).principal
    run(runtime, clock.now() + LIVE + timedelta(seconds=1))

    for actor in (member, clinician):
        with pytest.raises(NotFound), runtime.database.transaction() as session:
            ConversationAccess(session, runtime).load(actor, conversation_id)


def test_each_destroyed_conversation_is_audited_with_its_member_as_subject(runtime, clock, member):
    other = sign_in(runtime, make_member(runtime)).principal
    mine, theirs = question(runtime, member), question(runtime, other, 1)

    result = run(runtime, clock.now() + LIVE + timedelta(seconds=1))

    entries = audit_entries(runtime, prefix="retention.")
    destroyed = {e.target_id: e for e in entries if e.action == "retention.destroy"}
    assert set(destroyed) == {str(mine), str(theirs)}
    assert destroyed[str(mine)].subject_id == member.id
    assert destroyed[str(theirs)].subject_id == other.id
    details = json.loads(destroyed[str(mine)].details)
    assert (details["messages"], details["attachments"], details["wraps"]) == (2, 1, 3)
    (summary,) = [e for e in entries if e.action == "retention.run"]
    totals = json.loads(summary.details)
    assert totals["conversations_destroyed"] == 2 == result.conversations_destroyed
    assert summary.target_id == details["run_id"]
    # Ids, counts and codes only: no content, no name, no address.
    stored = " ".join(e.details for e in entries)
    for secret in (SUBJECT, *BODIES, FILE_NAME, "Camille", "Durand", "@example.org"):
        assert secret not in stored


def test_after_destruction_both_chains_verify(runtime, clock, member):
    question(runtime, member)
    seal(runtime, member, question(runtime, member, 1))
    run(runtime, clock.now() + ARCHIVE + timedelta(days=1))

    report = verify_ledger(runtime)
    assert report.ok, report
    assert report.records == 2  # the sealed record and its "destroyed" record
    with runtime.database.transaction() as session:
        assert audit.verify(session, runtime.keys.audit_mac).ok


def test_a_second_run_finds_nothing(runtime, clock, member):
    question(runtime, member)
    seal(runtime, member, question(runtime, member, 1))
    as_of = clock.now() + ARCHIVE + timedelta(days=1)
    first = run(runtime, as_of)
    assert (first.conversations_destroyed, first.archive_records_destroyed) == (1, 1)
    ledger_before = records(runtime)
    audited_before = len(audit_entries(runtime))

    second = run(runtime, as_of)

    assert second.counts() == dict.fromkeys(second.counts(), 0)
    assert [r.id for r in records(runtime)] == [r.id for r in ledger_before]
    new = audit_entries(runtime)[audited_before:]
    assert [e.action for e in new] == ["retention.run"]


def test_a_dry_run_lists_what_would_go_and_changes_nothing(runtime, clock, team, member):
    asked_at = clock.now()
    live = question(runtime, member)
    add_live_traces(runtime, live, member, team.clinician.id)
    archived = question(runtime, member, 1)
    record = seal(runtime, member, archived)
    as_of = asked_at + ARCHIVE + timedelta(hours=1)
    clock.set(as_of - LIVE + timedelta(minutes=1))
    young = question(runtime, member, 2)  # asked less than two years before ``as_of``
    before = table_snapshot(runtime, leave_out=("audit_entries", "chain_heads"))
    with runtime.database.transaction() as session:
        archive_head = session.get(ChainHead, ledger.ARCHIVE_CHAIN).entry_hash
    audited_before = len(audit_entries(runtime))

    result = run(runtime, as_of, dry_run=True)

    listed = {(item.kind, item.conversation_id, item.record_id) for item in result.due}
    assert listed == {
        (DueKind.ARCHIVE_DESTROY, archived, record.id),
        (DueKind.DESTROY, live, None),
    }
    due = {item.conversation_id: item.due_at for item in result.due}
    assert due[live] == asked_at + LIVE
    assert due[archived] == record.sealed_at + ARCHIVE
    assert young not in due
    assert (result.conversations_destroyed, result.archive_records_destroyed) == (1, 1)
    # Nothing changed: every row of every table, the ledger head, one audit entry.
    assert table_snapshot(runtime, leave_out=("audit_entries", "chain_heads")) == before
    with runtime.database.transaction() as session:
        assert session.get(ChainHead, ledger.ARCHIVE_CHAIN).entry_hash == archive_head
    new = audit_entries(runtime)[audited_before:]
    assert [e.action for e in new] == ["retention.dry_run"]
    assert json.loads(new[0].details)["conversations_destroyed"] == 1


def test_a_run_works_in_batches_and_reports_progress(runtime, clock, member):
    ids = [question(runtime, member, n) for n in range(5)]
    calls = []

    result = run(
        runtime,
        clock.now() + LIVE + timedelta(seconds=1),
        batch_size=2,
        progress=lambda done, total: calls.append((done, total)),
    )

    assert result.conversations_destroyed == 5 and result.batches == 3
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert not any(exists(runtime, i) for i in ids)
    run_ids = {
        json.loads(e.details)["run_id"]
        for e in audit_entries(runtime, prefix="retention.")
        if e.action == "retention.destroy"
    }
    assert len(run_ids) == 1


def test_a_failing_batch_leaves_nothing_of_itself(runtime, clock, member, monkeypatch):
    """One transaction per batch: the audit entries and the deletes of a failed batch are
    undone together; batches committed before it stay done; the run is audited as failed."""
    ids = []
    for n in range(3):  # oldest first: batch 1 is ids[0:2], batch 2 is ids[2]
        ids.append(question(runtime, member, n))
        clock.advance(seconds=1)
    real_destroy = retention_module.destroy_unless_busy
    calls = []

    def failing_second(session, conversation_ids):
        calls.append(list(conversation_ids))
        shredded = real_destroy(session, conversation_ids)
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return shredded

    monkeypatch.setattr(retention_module, "destroy_unless_busy", failing_second)
    with pytest.raises(RuntimeError):
        run(runtime, clock.now() + LIVE + timedelta(seconds=1), batch_size=2)

    assert [exists(runtime, i) for i in ids] == [False, False, True]
    entries = audit_entries(runtime, prefix="retention.")
    assert sorted(e.target_id for e in entries if e.action == "retention.destroy") == sorted(
        str(i) for i in ids[:2]
    )
    (summary,) = [e for e in entries if e.action == "retention.run"]
    assert summary.outcome == "failed"
    assert json.loads(summary.details)["conversations_destroyed"] == 2

    monkeypatch.undo()
    assert run(runtime, clock.now() + LIVE + timedelta(seconds=1)).conversations_destroyed == 1


def test_a_time_without_a_zone_is_refused(runtime, clock, member):
    question(runtime, member)
    with pytest.raises(ValueError, match="time zone"):
        run(runtime, (clock.now() + LIVE * 2).replace(tzinfo=None))
    assert audit_entries(runtime, prefix="retention.") == []


# -- seal-first ------------------------------------------------------------------------------


def test_seal_first_mode_seals_expired_conversations_into_the_archive(
    client, runtime, clock, team, person, member
):
    conversation_id = question(runtime, member)
    result = run(runtime, clock.now() + LIVE + timedelta(seconds=1), seal_expired=True)

    assert result.counts() == {
        "conversations_destroyed": 0,
        "conversations_sealed": 1,
        "archive_records_destroyed": 0,
    }
    (record,) = records(runtime)
    assert (record.kind, record.reason, record.conversation_id) == (
        "sealed",
        "retention",
        conversation_id,
    )
    # The live wraps are gone; the archive keeps the content under its own wrap.
    assert wrap_holders(runtime, conversation_id) == [Holder.ARCHIVE]
    assert stored_rows(runtime, conversation_id)["messages"] == 2
    assert verify_ledger(runtime).ok
    # Compliance finds it; the member and the clinicians get 404 for it.
    compliance = sign_in(runtime, team.compliance).principal
    with runtime.database.transaction() as session:
        page = ArchiveRecordService(session, runtime).search(compliance, person.email, limit=10)
    assert [(item.id, item.reason) for item in page.items] == [(record.id, "retention")]
    own = bearer(login(client, runtime, person))
    doctor = bearer(login(client, runtime, team.clinician))
    assert client.get(f"/api/v1/conversations/{conversation_id}", headers=own).status_code == 404
    clinician_path = f"/api/v1/clinician/conversations/{conversation_id}"
    assert client.get(clinician_path, headers=doctor).status_code == 404
    (entry,) = audit_entries(runtime, "retention.seal")
    assert (entry.target_id, entry.subject_id) == (str(conversation_id), member.id)
    assert json.loads(entry.details)["record_id"] == str(record.id)


def test_seal_first_is_the_setting_unless_the_caller_says_otherwise(make_app, clock):
    runtime = make_app(retention_seal_expired=True).extensions["medchat"]
    care_team(runtime)
    member = sign_in(runtime, make_member(runtime)).principal
    question(runtime, member)
    assert RetentionService(runtime).seal_expired is True
    result = run(runtime, clock.now() + LIVE + timedelta(seconds=1))
    assert (result.conversations_sealed, result.conversations_destroyed) == (1, 0)


def test_a_conversation_sealed_by_retention_is_destroyed_after_archive_retention(
    runtime, clock, member
):
    conversation_id = question(runtime, member)
    sealed_at = clock.now() + LIVE + timedelta(seconds=1)
    clock.set(sealed_at)
    run(runtime, seal_expired=True)

    assert run(runtime, sealed_at + ARCHIVE).archive_records_destroyed == 0
    assert run(runtime, sealed_at + ARCHIVE + timedelta(seconds=1)).archive_records_destroyed == 1
    assert stored_rows(runtime, conversation_id) == GONE
    assert verify_ledger(runtime).ok


# -- archive retention -----------------------------------------------------------------------


def test_archive_records_go_after_archive_retention_counted_from_their_sealing(
    runtime, clock, member
):
    """Asked at the same time, sealed a second apart: the boundary is the sealing time."""
    ids = [question(runtime, member, n) for n in range(3)]
    sealed = []
    for conversation_id in ids:
        sealed.append(seal(runtime, member, conversation_id))
        clock.advance(seconds=1)
    boundary = sealed[1].sealed_at

    result = run(runtime, boundary + ARCHIVE)

    assert result.archive_records_destroyed == 1
    assert [exists(runtime, i) for i in ids] == [False, True, True]
    rows = records(runtime)
    assert [r.kind for r in rows] == ["sealed", "sealed", "sealed", "destroyed"]
    assert rows[-1].refers_to == sealed[0].id and rows[-1].reason == "retention"
    assert stored_rows(runtime, ids[0]) == GONE
    assert verify_ledger(runtime).ok


def test_archive_retention_does_not_count_from_the_question(runtime, clock, member):
    conversation_id = question(runtime, member)
    clock.advance(days=365)  # sealed a year after the question
    record = seal(runtime, member, conversation_id)

    # Ten years after the question, but only nine after the sealing: kept in full.
    assert run(runtime, record.question_at + ARCHIVE + timedelta(days=1)).counts() == {
        "conversations_destroyed": 0,
        "conversations_sealed": 0,
        "archive_records_destroyed": 0,
    }
    assert stored_rows(runtime, conversation_id)["messages"] == 2


def test_a_destroyed_record_is_refused_to_compliance_and_marked_destroyed(
    runtime, clock, team, person, member
):
    conversation_id = question(runtime, member)
    record = seal(runtime, member, conversation_id)
    compliance = sign_in(runtime, team.compliance).principal
    run(runtime, record.sealed_at + ARCHIVE + timedelta(seconds=1))

    with pytest.raises(Conflict), runtime.database.transaction() as session:
        RetrievalService(session, runtime).request(
            compliance, record.id, "Court order 2036/17 about this exchange."
        )
    with runtime.database.transaction() as session:
        page = ArchiveRecordService(session, runtime).search(compliance, person.email, limit=10)
    assert [(item.id, item.content_destroyed) for item in page.items] == [(record.id, True)]
    (entry,) = audit_entries(runtime, "retention.archive_destroy")
    assert (entry.target_id, entry.subject_id, entry.outcome) == (
        str(conversation_id),
        member.id,
        "success",
    )
    assert json.loads(entry.details)["record_id"] == str(record.id)


def test_an_approved_retrieval_cannot_open_content_retention_destroyed(
    runtime, clock, team, member
):

    record = seal(runtime, member, question(runtime, member))
    # Asked and approved the day before the archive period ends: still open when it does.
    clock.set(record.sealed_at + ARCHIVE - timedelta(days=1))
    a = sign_in(runtime, team.compliance).principal
    b = sign_in(runtime, archive_colleague(runtime, team.compliance)).principal
    with runtime.database.transaction() as session:
        retrieval = RetrievalService(session, runtime).request(
            a, record.id, "Regulator inquiry 2036/44 about this exchange."
        )
    with runtime.database.transaction() as session:
        RetrievalService(session, runtime).approve(b, retrieval.id)

    run(runtime, record.sealed_at + ARCHIVE + timedelta(seconds=1))

    with pytest.raises(Conflict), runtime.database.transaction() as session:
        RetrievalService(session, runtime).content(a, retrieval.id)


def test_altered_archive_content_is_left_in_place_as_evidence(runtime, clock, member):
    """Destroying it would append a valid "destroyed" record and erase what verify names."""
    conversation_id = question(runtime, member)
    record = seal(runtime, member, conversation_id)
    intact = seal(runtime, member, question(runtime, member, 1))
    with runtime.database.transaction() as session:
        message_id = session.scalar(
            text("SELECT id FROM messages WHERE conversation_id = :c LIMIT 1").bindparams(
                c=conversation_id
            )
        )
    flip_byte(runtime, "messages", "body_ciphertext", uuid.UUID(str(message_id)))

    result = run(runtime, intact.sealed_at + ARCHIVE + timedelta(seconds=1))

    assert (result.archive_records_destroyed, result.archive_records_refused) == (1, 1)
    assert exists(runtime, conversation_id)
    report = verify_ledger(runtime)
    assert report.first_bad == record.id and "content" in (report.reason or "")
    (refused,) = [e for e in audit_entries(runtime, prefix="retention.") if e.outcome == "failed"]
    assert (refused.action, refused.target_id) == (
        "retention.archive_destroy",
        str(conversation_id),
    )


def test_a_record_whose_sealing_time_was_moved_is_judged_by_its_signed_record(
    runtime, clock, member
):
    """Moving ``conversations.sealed_at`` back (SQL) does not make a record due early."""
    from tests.support.tampering import execute_sql

    conversation_id = question(runtime, member)
    record = seal(runtime, member, conversation_id)
    execute_sql(
        runtime,
        "UPDATE conversations SET sealed_at = :at WHERE id = :id",
        at=record.sealed_at - ARCHIVE,
        id=conversation_id,
    )

    assert run(runtime, record.sealed_at + timedelta(days=1)).archive_records_destroyed == 0
    assert exists(runtime, conversation_id)


# -- concurrency -----------------------------------------------------------------------------


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


def test_a_dry_run_in_seal_first_mode_lists_seals(runtime, clock, member):
    conversation_id = question(runtime, member)

    result = run(
        runtime, clock.now() + LIVE + timedelta(seconds=1), dry_run=True, seal_expired=True
    )

    assert [(item.kind, item.conversation_id) for item in result.due] == [
        (DueKind.SEAL, conversation_id)
    ]
    assert (result.conversations_sealed, result.conversations_destroyed) == (1, 0)
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


def test_a_conversation_sealed_by_retention_is_kept_for_the_archive_period(runtime, clock, member):
    """Sealed at the run's time, its record is due only once archive retention has passed
    since then: a second run the same day destroys nothing."""
    conversation_id = question(runtime, member)
    as_of = clock.now() + LIVE + timedelta(days=1)

    first = run(runtime, as_of, seal_expired=True)

    assert (first.conversations_sealed, first.archive_records_destroyed) == (1, 0)
    assert run(runtime, as_of, seal_expired=True).archive_records_destroyed == 0
    assert stored_rows(runtime, conversation_id)["messages"] == 2
    later = run(runtime, as_of + ARCHIVE - timedelta(seconds=1), seal_expired=True)
    assert later.archive_records_destroyed == 0
    assert run(runtime, as_of + ARCHIVE + timedelta(seconds=1)).archive_records_destroyed == 1
    assert verify_ledger(runtime).ok


def test_a_run_never_looks_ahead_of_the_clock(runtime, clock, member):
    """Destroying as of a later time would destroy early: refused, nothing changed; a dry
    run may look ahead."""
    conversation_id = question(runtime, member)
    later = clock.now() + LIVE + timedelta(days=1)

    with pytest.raises(EarlyDestruction):
        RetentionService(runtime).run(later)

    assert stored_rows(runtime, conversation_id)["messages"] == 2
    assert audit_entries(runtime, prefix="retention.") == []
    preview = RetentionService(runtime).run(later, dry_run=True)
    assert preview.conversations_destroyed == 1
    assert stored_rows(runtime, conversation_id)["messages"] == 2


def test_the_members_access_log_shows_what_retention_did_to_their_data(runtime, clock, member):
    """SECURITY-MODEL "Transparency": the real run's entries reach the member's access log as
    ``retention`` by ``system``, for their conversations only."""
    from medchat.services.access_log import AccessLogService

    other = sign_in(runtime, make_member(runtime)).principal
    destroyed = question(runtime, member)
    sealed_record = seal(runtime, member, question(runtime, member, 1))
    question(runtime, other, 2)

    run(runtime, sealed_record.sealed_at + ARCHIVE + timedelta(seconds=1))

    with runtime.database.transaction() as session:
        page = AccessLogService(session, runtime).page(member, limit=50)
    shown = {(e.actor, e.action, e.conversation_id) for e in page.items}
    assert shown == {
        ("system", "retention", destroyed),
        ("system", "retention", sealed_record.conversation_id),
    }
