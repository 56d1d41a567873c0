"""Who has the question (issue 17, item 3): claims, hand-overs, releases, answering needs one.

``medchat.services.claims`` holds the rules; these tests walk them through the clinician API
as two doctors and a member would, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat.config import Settings
from medchat.errors import ConfigurationError
from medchat.models import AuditEntry, ConversationClaim, KeyRole, Message
from medchat.services.role_keys import RoleKeyService
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.messaging import (
    CONVERSATIONS,
    asked,
    care_team,
    claim,
    count,
    give_consent,
    send,
)
from tests.support.sessions import sign_in

CASES = "/api/v1/clinician/conversations"
QUEUE = "/api/v1/clinician/queue"


@pytest.fixture
def team(runtime):
    return care_team(runtime)


@pytest.fixture
def patient(client, runtime, team):
    tokens = login(client, runtime, make_member(runtime, first_name="Noor"))
    give_consent(client, tokens)
    return tokens


@pytest.fixture
def doctor(client, runtime, team):
    return login(client, runtime, team.clinician)


@pytest.fixture
def colleague(client, runtime, team):
    """A second clinician holding the physician key ("Dr. B."), signed in after the grant."""
    person = make_staff(runtime, Role.CLINICIAN, first_name="Bruno", last_name="Bernard")
    holder = sign_in(runtime, team.clinician).principal
    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).grant(holder, KeyRole.PHYSICIAN, person.id)
    return {"person": person, "tokens": login(client, runtime, person)}


def _answer(client, tokens, conversation_id, body="An answer."):
    return send(client, tokens, f"{CASES}/{conversation_id}/messages", body)


def _queue_ids(client, tokens, claim_filter: str) -> list[str]:
    response = client.get(f"{QUEUE}?claim={claim_filter}", headers=bearer(tokens))
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


def test_answering_needs_ones_own_live_claim(client, runtime, patient, doctor, colleague):
    question = asked(client, patient, "Is this rash serious?", subject="Rash")

    unclaimed = _answer(client, doctor, question)
    assert unclaimed.status_code == 409
    assert unclaimed.get_json()["error"]["code"] == "claim_required"

    mine = claim(client, doctor, question)
    assert mine["state"] == "mine" and mine["clinician_name"] == "Dr. M."
    assert mine["handed_by_name"] is None and mine["reason"] is None

    # The colleague sees it taken, by whom, until when; they can neither answer nor claim it.
    case = client.get(f"{CASES}/{question}", headers=bearer(colleague["tokens"])).get_json()
    assert case["claim"]["state"] == "other" and case["claim"]["clinician_name"] == "Dr. M."
    assert case["claim"]["expires_at"] == mine["expires_at"] and case["in_review"] is True
    for refused in (
        _answer(client, colleague["tokens"], question),
        client.post(f"{CASES}/{question}/claim", headers=bearer(colleague["tokens"])),
        client.delete(f"{CASES}/{question}/claim", headers=bearer(colleague["tokens"])),
    ):
        assert refused.status_code == 409
        error = refused.get_json()["error"]
        assert error["code"] == "claimed_by_other" and error["details"]["claimed_by"] == "Dr. M."
    assert count(runtime, Message) == 1

    assert _answer(client, doctor, question).status_code == 201
    assert count(runtime, Message) == 2


def test_the_member_learns_only_that_a_doctor_is_looking(client, runtime, patient, doctor):
    question = asked(client, patient, "Question")
    listed = client.get(CONVERSATIONS, headers=bearer(patient)).get_json()["items"][0]
    assert listed["in_review"] is False
    claim(client, doctor, question)
    one = client.get(f"{CONVERSATIONS}/{question}", headers=bearer(patient))
    listed = client.get(CONVERSATIONS, headers=bearer(patient)).get_json()["items"][0]
    assert one.get_json()["in_review"] is True and listed["in_review"] is True
    for response in (one, client.get(CONVERSATIONS, headers=bearer(patient))):
        assert "claim" not in response.get_json()
        assert b"Dr." not in response.data and b"expires" not in response.data


def test_a_claim_expires_back_into_the_queue(client, runtime, team, patient, doctor, colleague):
    question = asked(client, patient, "Question")
    claim(client, doctor, question)
    minutes = runtime.settings.claim_minutes
    assert minutes == 30  # the default
    runtime.clock.advance(minutes=minutes - 2)  # signing in again moves the clock a little
    theirs = login(client, runtime, colleague["person"])  # access tokens last 15 minutes
    assert _queue_ids(client, theirs, "claimed") == [question]
    runtime.clock.advance(minutes=2, seconds=1)
    theirs = login(client, runtime, colleague["person"])
    doctor = login(client, runtime, team.clinician)
    assert _queue_ids(client, theirs, "unclaimed") == [question]
    assert _queue_ids(client, theirs, "claimed") == []
    late = _answer(client, doctor, question)
    assert late.status_code == 409 and late.get_json()["error"]["code"] == "claim_required"
    taken = claim(client, theirs, question)
    assert taken["state"] == "mine" and taken["clinician_name"] == "Dr. B."
    assert _answer(client, theirs, question).status_code == 201


def test_answering_renews_the_claim(client, runtime, team, patient, doctor):
    question = asked(client, patient, "Question")
    claim(client, doctor, question)
    runtime.clock.advance(minutes=20)
    doctor = login(client, runtime, team.clinician)
    assert _answer(client, doctor, question).status_code == 201
    runtime.clock.advance(minutes=20)  # 40 minutes after the claim, 20 after the answer
    doctor = login(client, runtime, team.clinician)
    assert _answer(client, doctor, question, "And one more thing.").status_code == 201


def test_hand_over_to_a_named_colleague_with_a_reason_code(
    client, runtime, team, patient, doctor, colleague
):
    question = asked(client, patient, "Question")
    claim(client, doctor, question)
    to = str(colleague["person"].id)
    path = f"{CASES}/{question}/claim/handoff"
    admin = make_staff(runtime, Role.ADMIN)
    for body in (
        {"to": str(team.clinician.id), "reason": "workload"},  # oneself
        {"to": str(admin.id), "reason": "workload"},  # not a clinician
        {"to": str(uuid.uuid4()), "reason": "workload"},  # nobody
        {"to": to, "reason": "she has diabetes"},  # free text is not a reason
        {"to": to, "reason": "workload", "note": "Patient is diabetic"},  # no note field
        {"to": to},
    ):
        refused = client.post(path, json=body, headers=bearer(doctor))
        assert refused.status_code == 422, body
        assert refused.get_json()["error"]["code"] == "validation_error"

    handed = client.post(path, json={"to": to, "reason": "shift_end"}, headers=bearer(doctor))
    assert handed.status_code == 200, handed.get_json()
    assert handed.get_json()["state"] == "other"
    assert handed.get_json()["clinician_name"] == "Dr. B."
    theirs = client.get(f"{CASES}/{question}", headers=bearer(colleague["tokens"])).get_json()
    assert theirs["claim"]["state"] == "mine"
    assert theirs["claim"]["handed_by_name"] == "Dr. M."
    assert theirs["claim"]["reason"] == "shift_end"
    assert _queue_ids(client, colleague["tokens"], "mine") == [question]
    assert _queue_ids(client, doctor, "mine") == []

    assert _answer(client, doctor, question).status_code == 409
    again = client.post(path, json={"to": to, "reason": "workload"}, headers=bearer(doctor))
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "claimed_by_other"
    assert _answer(client, colleague["tokens"], question).status_code == 201


def test_release_returns_the_question_to_the_queue(client, runtime, patient, doctor, colleague):
    question = asked(client, patient, "Question")
    other = asked(client, patient, "Another question")
    assert set(_queue_ids(client, doctor, "all")) == {question, other}
    claim(client, doctor, question)
    assert claim(client, doctor, question)["state"] == "mine"  # claiming again renews
    assert _queue_ids(client, doctor, "mine") == [question]
    assert _queue_ids(client, colleague["tokens"], "mine") == []
    assert _queue_ids(client, doctor, "claimed") == [question]
    assert _queue_ids(client, doctor, "unclaimed") == [other]

    released = client.delete(f"{CASES}/{question}/claim", headers=bearer(doctor))
    assert released.status_code == 204
    assert _queue_ids(client, doctor, "claimed") == []
    again = client.delete(f"{CASES}/{question}/claim", headers=bearer(doctor))
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "claim_required"
    assert claim(client, colleague["tokens"], question)["state"] == "mine"

    bad = client.get(f"{QUEUE}?claim=theirs", headers=bearer(doctor))
    assert bad.status_code == 422


def test_a_closed_question_cannot_be_claimed(client, runtime, patient, doctor):
    question = asked(client, patient, "Question")
    claim(client, doctor, question)
    assert client.post(f"{CASES}/{question}/close", headers=bearer(doctor)).status_code == 200
    for response in (
        client.post(f"{CASES}/{question}/claim", headers=bearer(doctor)),
        client.delete(f"{CASES}/{question}/claim", headers=bearer(doctor)),
    ):
        assert response.status_code == 409 and response.get_json()["error"]["code"] == "conflict"


def test_claims_are_audited_with_the_member_as_subject(
    client, runtime, team, patient, doctor, colleague
):
    question = asked(client, patient, "Secret question")
    claim(client, doctor, question)
    to = str(colleague["person"].id)
    client.post(
        f"{CASES}/{question}/claim/handoff",
        json={"to": to, "reason": "specialty"},
        headers=bearer(doctor),
    )
    client.delete(f"{CASES}/{question}/claim", headers=bearer(colleague["tokens"]))
    with runtime.database.transaction() as session:
        entries = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action.like("conversation.claim%"))
            .order_by(AuditEntry.seq)
        ).all()
        member = session.scalar(select(Message.author_id).where(Message.author_role == "member"))
    assert [e.action for e in entries] == [
        "conversation.claim",
        "conversation.claim_handoff",
        "conversation.claim_release",
    ]
    assert {e.target_id for e in entries} == {question}
    assert {e.subject_id for e in entries} == {member}
    assert json.loads(entries[1].details) == {"to": to, "reason": "specialty"}
    assert all("Secret" not in str(e.details) for e in entries)


def _race_for(app, question: str, racers: dict[str, dict]) -> list[tuple[str, int, dict]]:
    """Each racer claims ``question`` at the same moment, each request on its own
    connection (PostgreSQL: concurrent transactions)."""
    results: list[tuple[str, int, dict]] = []
    barrier = threading.Barrier(len(racers))

    def fire(name: str, tokens: dict) -> None:
        racer = app.test_client()
        barrier.wait()
        response = racer.post(f"{CASES}/{question}/claim", headers=bearer(tokens))
        results.append((name, response.status_code, response.get_json()))

    threads = [threading.Thread(target=fire, args=item) for item in racers.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_two_doctors_racing_for_a_claim_exactly_one_wins(
    app, client, runtime, patient, doctor, colleague
):
    racers = {"doctor": doctor, "colleague": colleague["tokens"]}
    for _round in range(3):
        question = asked(client, patient, "Question")
        results = _race_for(app, question, racers)
        assert sorted(status for _, status, _ in results) == [200, 409], results
        (winner,) = [name for name, status, _ in results if status == 200]
        (loser,) = [body for _, status, body in results if status == 409]
        assert loser["error"]["code"] == "claimed_by_other"
        with runtime.database.transaction() as session:
            rows = session.scalars(
                select(ConversationClaim).where(
                    ConversationClaim.conversation_id == uuid.UUID(question)
                )
            ).all()
        assert len(rows) == 1 and len({r.clinician_id for r in rows}) == 1
        assert _answer(client, racers[winner], question).status_code == 201
        loser_name = "colleague" if winner == "doctor" else "doctor"
        assert _answer(client, racers[loser_name], question).status_code == 409


def test_a_planted_claim_row_is_refused(client, runtime, patient, doctor, colleague):
    """A database writer gives a question to the clinician of their choice: refused."""
    question = asked(client, patient, "Question")
    now = runtime.clock.now()
    with runtime.database.engine.begin() as connection:  # the writer's own statement
        connection.execute(
            ConversationClaim.__table__.insert().values(  # type: ignore[attr-defined]
                id=uuid.uuid4(),
                conversation_id=uuid.UUID(question),
                clinician_id=colleague["person"].id,
                claimed_at=now,
                expires_at=now.replace(year=now.year + 1),
                row_tag=b"\x00" * 32,
            )
        )
    # Reads are served without the planted claim; claiming and answering refuse it.
    case = client.get(f"{CASES}/{question}", headers=bearer(colleague["tokens"])).get_json()
    assert case["claim"] is None and case["in_review"] is False
    member_view = client.get(f"{CONVERSATIONS}/{question}", headers=bearer(patient)).get_json()
    assert member_view["in_review"] is False
    assert _queue_ids(client, doctor, "all") == [question]
    for response in (
        _answer(client, colleague["tokens"], question),
        client.post(f"{CASES}/{question}/claim", headers=bearer(colleague["tokens"])),
    ):
        assert response.status_code == 409
        assert response.get_json()["error"]["code"] == "row_integrity_failed"
    assert count(runtime, Message) == 1


def test_claim_minutes_are_validated_at_start():
    assert Settings.from_env({"MEDCHAT_CLAIM_MINUTES": "45"}).claim_minutes == 45
    for bad in ("0", "1441", "-5"):
        with pytest.raises(ConfigurationError, match="MEDCHAT_CLAIM_MINUTES"):
            Settings.from_env({"MEDCHAT_CLAIM_MINUTES": bad})
