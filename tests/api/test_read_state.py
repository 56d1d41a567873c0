"""Read state in both APIs (issue 17, item 2): per-participant read markers.

The member sees which of their messages a doctor has read (``read_by_other_through``) and
which replies are unread (``unread_count``, ``read_through``); clinicians see the member's
messages they have not read. Marking read is idempotent and audited as a read.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat.models import AuditEntry, ConversationRead, KeyRole
from medchat.services.role_keys import RoleKeyService
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.console import console_login
from tests.support.messaging import CONVERSATIONS, asked, care_team, claim, give_consent, send
from tests.support.rights import ACCESS_LOG
from tests.support.sessions import sign_in

CASES = "/api/v1/clinician/conversations"
QUEUE = "/api/v1/clinician/queue"


@pytest.fixture
def team(runtime):
    return care_team(runtime)


@pytest.fixture
def patient(client, runtime, team):
    tokens = login(client, runtime, make_member(runtime))
    give_consent(client, tokens)
    return tokens


@pytest.fixture
def doctor(client, runtime, team):
    return login(client, runtime, team.clinician)


def _mine(client, tokens, conversation_id: str) -> dict:
    listed = client.get(CONVERSATIONS, headers=bearer(tokens)).get_json()["items"]
    (item,) = [c for c in listed if c["id"] == conversation_id]
    one = client.get(f"{CONVERSATIONS}/{conversation_id}", headers=bearer(tokens)).get_json()
    keys = ("unread_count", "read_through", "read_by_other_through")
    assert {k: item[k] for k in keys} == {k: one[k] for k in keys}
    return one


def _times(client, tokens, conversation_id: str) -> list[str]:
    page = client.get(
        f"{CONVERSATIONS}/{conversation_id}/messages?order=asc", headers=bearer(tokens)
    ).get_json()
    return [m["created_at"] for m in page["items"]]


def _mark(client, tokens, path: str) -> None:
    response = client.post(f"{path}/read", headers=bearer(tokens))
    assert response.status_code == 204, response.get_json()


def test_the_member_sees_what_the_doctor_read_and_which_replies_are_unread(
    client, runtime, patient, doctor
):
    question = asked(client, patient, "Question")
    fresh = _mine(client, patient, question)
    assert (fresh["unread_count"], fresh["read_through"], fresh["read_by_other_through"]) == (
        0,
        None,
        None,
    )
    runtime.clock.advance(seconds=1)
    claim(client, doctor, question)
    for body in ("First answer.", "Second answer."):
        runtime.clock.advance(seconds=1)
        assert send(client, doctor, f"{CASES}/{question}/messages", body).status_code == 201
    times = _times(client, patient, question)
    state = _mine(client, patient, question)
    assert state["unread_count"] == 2 and state["read_by_other_through"] is None

    _mark(client, doctor, f"{CASES}/{question}")
    state = _mine(client, patient, question)
    assert state["read_by_other_through"] == times[-1]  # the question was read
    assert state["unread_count"] == 2

    _mark(client, patient, f"{CONVERSATIONS}/{question}")
    state = _mine(client, patient, question)
    assert state["unread_count"] == 0 and state["read_through"] == times[-1]

    # A follow-up: unread for the doctor, not yet read by any doctor.
    runtime.clock.advance(seconds=1)
    follow_up = send(client, patient, f"{CONVERSATIONS}/{question}/messages", "Thanks")
    assert follow_up.status_code == 201
    state = _mine(client, patient, question)
    assert state["unread_count"] == 0 and state["read_by_other_through"] == times[-1]
    case = client.get(f"{CASES}/{question}", headers=bearer(doctor)).get_json()
    assert case["unread_count"] == 1 and case["read_by_other_through"] == times[-1]
    assert case["read_through"] == times[-1]


def test_unread_counts_are_per_clinician_in_the_queue(client, runtime, team, patient, doctor):
    first = asked(client, patient, "One")
    second = asked(client, patient, "Two")
    send(client, patient, f"{CONVERSATIONS}/{second}/messages", "More about two")
    colleague = make_staff(runtime, Role.CLINICIAN)
    holder = sign_in(runtime, team.clinician).principal
    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).grant(holder, KeyRole.PHYSICIAN, colleague.id)
    theirs = login(client, runtime, colleague)
    _mark(client, doctor, f"{CASES}/{second}")

    def counts(tokens) -> dict[str, int]:
        items = client.get(QUEUE, headers=bearer(tokens)).get_json()["items"]
        return {item["id"]: item["unread_count"] for item in items}

    assert counts(doctor) == {first: 1, second: 0}
    assert counts(theirs) == {first: 1, second: 2}


def test_marking_read_is_idempotent_and_audited_as_a_read(client, runtime, patient, doctor):
    question = asked(client, patient, "Question")
    for _ in range(2):
        _mark(client, patient, f"{CONVERSATIONS}/{question}")
        _mark(client, doctor, f"{CASES}/{question}")
    with runtime.database.transaction() as session:
        rows = session.scalars(select(ConversationRead)).all()
        assert sorted(row.last_read_seq for row in rows) == [1, 1]
        entries = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action.in_(("content.read.marked", "conversation.read_marked")))
            .order_by(AuditEntry.seq)
        ).all()
    assert [(e.action, e.actor_role) for e in entries] == [
        ("conversation.read_marked", "member"),
        ("content.read.marked", "clinician"),
    ] * 2
    assert {e.target_id for e in entries} == {question}
    # The member's access log shows the doctor's marking as a read.
    log = client.get(ACCESS_LOG, headers=bearer(patient)).get_json()["items"]
    assert [item["action"] for item in log].count("read") == 2


def test_marking_someone_elses_or_an_unknown_conversation_is_404(client, runtime, patient, doctor):
    question = asked(client, patient, "Question")
    intruder = login(client, runtime, make_member(runtime))
    for path, tokens in (
        (f"{CONVERSATIONS}/{question}", intruder),
        (f"{CONVERSATIONS}/{uuid.uuid4()}", patient),
        (f"{CASES}/{uuid.uuid4()}", doctor),
    ):
        response = client.post(f"{path}/read", headers=bearer(tokens))
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"
    staff = client.post(f"{CONVERSATIONS}/{question}/read", headers=bearer(doctor))
    member = client.post(f"{CASES}/{question}/read", headers=bearer(patient))
    assert (staff.status_code, member.status_code) == (403, 403)
    with runtime.database.transaction() as session:
        assert session.scalars(select(ConversationRead)).all() == []


def test_opening_a_conversation_in_the_console_shows_the_member_it_was_read(
    app, client, runtime, team, patient
):
    question = asked(client, patient, "Question")
    console = app.test_client()
    console_login(console, runtime, team.clinician)
    assert console.get(f"/console/conversations/{question}").status_code == 200
    state = _mine(client, patient, question)
    assert state["read_by_other_through"] == _times(client, patient, question)[-1]
    # The marker moved: a data change, audited as the API's mark is (the member sees it).
    with runtime.database.transaction() as session:
        marks = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "content.read.marked")
        ).all()
    assert [(m.target_id, m.actor_id) for m in marks] == [(str(question), team.clinician.id)]
