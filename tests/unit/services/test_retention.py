"""Retention by crypto-shredding: the live period (SECURITY-MODEL "Deletion, sealed archive,
retention", "Audit", "Transparency").

Real database, real crypto, an injected clock: conversations are made through the service
building blocks, and what retention leaves behind is read as raw rows. Each rule of a run has a
test that fails when the rule is broken: the exact boundary of the period, every row and wrap
gone, both chains valid, one audit entry per item with the member as subject (and in the
member's access log), a batch that fails leaving nothing, idempotence, a dry run changing
nothing, and a run that never destroys ahead of the clock. Seal-first mode and the archive
period are in ``test_retention_archive.py``, concurrent runs in ``test_retention_concurrency.py``.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from medchat import audit
from medchat.archive import ledger
from medchat.errors import NotFound
from medchat.models import ChainHead
from medchat.services import retention as retention_module
from medchat.services.conversation_access import ConversationAccess
from medchat.services.retention import DueKind, EarlyDestruction, RetentionService
from tests.support.accounts import make_member
from tests.support.archive import records, seal, verify_ledger
from tests.support.audit import audit_entries
from tests.support.messaging import care_team
from tests.support.retention import (
    ARCHIVE,
    BODIES,
    FILE_NAME,
    GONE,
    LIVE,
    SUBJECT,
    add_live_traces,
    every_stored_value,
    exists,
    question,
    run,
    stored_bytes,
    stored_rows,
    table_snapshot,
    wrap_holders,
)
from tests.support.sessions import sign_in


@pytest.fixture
def person(runtime, team):
    return make_member(runtime)


@pytest.fixture
def member(runtime, person):
    return sign_in(runtime, person).principal


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
