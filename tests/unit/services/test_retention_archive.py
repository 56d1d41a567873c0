"""Retention of the sealed archive (SECURITY-MODEL "Deletion, sealed archive, retention").

A sealed conversation outlives the live period so that compliance can still answer a court or
a regulator; retention must keep it exactly as long as the archive period and then shred it as
thoroughly as a live one. Real database, real crypto, an injected clock: conversations are
sealed through the deletion service (or by retention itself) and read back as raw rows and
ledger records. Each rule has a test that fails when the rule is broken: seal-first mode
sealing expired conversations instead of destroying them (and its dry run listing seals), the
exact boundary of the archive period counted from the signed sealing time (not from the
question, nor from a column SQL can move), a destroyed record refused to compliance even
through an approved retrieval, and altered archive content left in place as evidence.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from medchat.errors import Conflict
from medchat.models import Holder
from medchat.services.archive_records import ArchiveRecordService
from medchat.services.retention import DueKind, RetentionService
from medchat.services.retrieval import RetrievalService
from tests.support.accounts import bearer, login, make_member
from tests.support.archive import archive_colleague, flip_byte, records, seal, verify_ledger
from tests.support.audit import audit_entries
from tests.support.messaging import care_team
from tests.support.retention import (
    ARCHIVE,
    GONE,
    LIVE,
    exists,
    question,
    run,
    stored_rows,
    wrap_holders,
)
from tests.support.sessions import sign_in


@pytest.fixture
def person(runtime, team):
    return make_member(runtime)


@pytest.fixture
def member(runtime, person):
    return sign_in(runtime, person).principal


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
