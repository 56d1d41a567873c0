"""A conversation's question time, moved through SQL, does not make retention act early.

``conversations.created_at`` is outside every tag. Backdated, it had the daily run destroy a
live conversation two years early as an ordinary ``retention.destroy``, or, sealing expired
conversations, seal it and lift its archive gate, after which one compliance officer with a
copy of the database opened live content without a second officer (found by a review as a
database writer). The run now asks the audit trail's genuine ``conversation.start`` entry
(``medchat.services.question_times``) and leaves a conversation it contradicts, audited.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from medchat import audit
from medchat.models import AuditEntry, Conversation
from medchat.services.question_times import contradicted
from tests.support.accounts import login, make_member
from tests.support.archive import archive_colleague
from tests.support.cli import cli_runner
from tests.support.messaging import asked, care_team, give_consent
from tests.support.officer_copy import archive_keys_from_copy, conversations_opened_from_copy
from tests.support.retention import exists, run
from tests.support.tampering import execute_sql

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
TWO_YEARS = timedelta(days=2 * 366 + 1)


@pytest.fixture
def questions(client, runtime):
    """Two questions asked through the API (each witnessed by its ``conversation.start``),
    and the compliance officer who holds the archive key."""
    team = care_team(runtime)
    archive_colleague(runtime, team.compliance)
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    ids = [uuid.UUID(asked(client, tokens, f"Question {n}")) for n in range(2)]
    return team, ids, member


def _backdate(runtime, conversation_id: uuid.UUID) -> None:
    execute_sql(
        runtime,
        "UPDATE conversations SET created_at = :t WHERE id = :id",
        t=LONG_AGO,
        id=conversation_id,
    )


def _refusals(runtime) -> list[tuple[str, str, dict, str, uuid.UUID]]:
    with runtime.database.transaction() as session:
        entries = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action.in_(("retention.destroy", "retention.seal")),
                AuditEntry.outcome == "failed",
            )
        )
        return [
            (e.action, e.target_id, json.loads(e.details), e.target_type, e.subject_id)
            for e in entries
        ]


def test_a_backdated_question_is_not_destroyed_and_the_refusal_is_audited(
    runtime, questions, caplog
):
    _, (moved, other), member = questions
    _backdate(runtime, moved)

    with caplog.at_level(logging.ERROR, logger="medchat.retention"):
        result = run(runtime, seal_expired=False)

    assert [r.getMessage() for r in caplog.records] == [
        f"retention left conversation {moved}: question time moved"
    ]
    assert (result.conversations_destroyed, result.live_refused) == (0, 1)
    assert exists(runtime, moved) and exists(runtime, other)
    ((action, target, details, target_type, subject),) = _refusals(runtime)
    assert (action, target_type, target) == ("retention.destroy", "conversation", str(moved))
    assert details["refused"] == "question_time"
    assert subject == member.id
    with runtime.database.transaction() as session:
        summary = session.scalar(select(AuditEntry).where(AuditEntry.action == "retention.run"))
    assert details["run_id"] == summary.target_id  # the run it was refused in


def test_a_backdated_question_is_not_sealed_so_its_archive_gate_stays_shut(runtime, questions):
    team, (moved, _), _ = questions
    _backdate(runtime, moved)

    result = run(runtime, seal_expired=True)

    assert (result.conversations_sealed, result.live_refused) == (0, 1)
    keys = archive_keys_from_copy(runtime, team.compliance)
    assert keys and conversations_opened_from_copy(runtime, keys) == {}
    assert [refusal[0] for refusal in _refusals(runtime)] == ["retention.seal"]


def test_when_the_witness_agrees_the_question_is_destroyed_on_time(runtime, clock, questions):
    _, (first, second), _ = questions
    _backdate(runtime, first)  # moved, but two years have passed anyway

    result = run(runtime, clock.now() + TWO_YEARS, seal_expired=False)

    assert (result.conversations_destroyed, result.live_refused) == (2, 0)
    assert not exists(runtime, first) and not exists(runtime, second)


def test_a_planted_witness_neither_stops_nor_starts_a_destruction(runtime, clock, questions):
    """A copy of the start entry with a later time and its own seq is no witness (its hash
    and MAC fail): the genuine entry decides."""
    _, (first, _), _ = questions
    table = AuditEntry.__table__
    with runtime.database.engine.begin() as db:
        row = dict(
            db.execute(
                select(table).where(
                    table.c.action == "conversation.start", table.c.target_id == str(first)
                )
            )
            .mappings()
            .one()
        )
        top = db.execute(select(func.max(table.c.seq))).scalar_one()
        row.update(seq=top + 10**9, chain="audit/63", position=1, at=row["at"] + 3 * TWO_YEARS)
        db.execute(insert(table).values(**row))

    result = run(runtime, clock.now() + TWO_YEARS, seal_expired=False)

    assert (result.conversations_destroyed, result.live_refused) == (2, 0)


def test_the_command_says_so_and_exits_1(app, runtime, questions):
    _, (moved, _), _ = questions
    _backdate(runtime, moved)

    result = cli_runner(app).invoke(args=["retention", "run", "--json"])

    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["live_refused"] == 1


def _witness_check(runtime, conversation_id: uuid.UUID, cutoff: datetime) -> set[uuid.UUID]:
    with runtime.database.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        return contradicted(session, runtime.keys.audit_mac, [conversation], cutoff)


def _started_at(runtime, conversation_id: uuid.UUID) -> datetime:
    with runtime.database.transaction() as session:
        return session.scalar(
            select(AuditEntry.at).where(
                AuditEntry.action == "conversation.start",
                AuditEntry.target_id == str(conversation_id),
            )
        )


def test_a_question_asked_at_the_cutoff_itself_is_not_due(runtime, questions):
    _, (first, _), _ = questions
    asked_at = _started_at(runtime, first)
    assert _witness_check(runtime, first, asked_at) == {first}
    assert _witness_check(runtime, first, asked_at + timedelta(microseconds=1)) == set()


def test_only_the_start_entry_witnesses_the_question(runtime, clock, questions):
    """Later genuine entries about the conversation (a read; an entry of the start action
    about an account of the same id) say nothing of when it was asked."""
    _, (first, _), _ = questions
    asked_at = _started_at(runtime, first)
    clock.advance(days=2)
    with runtime.database.transaction() as session:
        audit.record(
            session, "content.read.conversation", target_type="conversation", target_id=first
        )
        audit.record(session, "conversation.start", target_type="account", target_id=first)
    assert _witness_check(runtime, first, asked_at + timedelta(days=1)) == set()
