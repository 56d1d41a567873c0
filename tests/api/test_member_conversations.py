"""Member conversations over HTTP (API.md "Member"): ask, list, read, send, retry safely."""

from __future__ import annotations

import base64
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from medchat.models import AuditEntry, Conversation, IdempotencyRecord, Message
from tests.support.accounts import bearer, login, make_member
from tests.support.messaging import (
    CONVERSATIONS,
    ask,
    asked,
    care_team,
    claim,
    count,
    give_consent,
    send,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture
def team(runtime):
    return care_team(runtime)


@pytest.fixture
def member(runtime):
    return make_member(runtime)


@pytest.fixture
def consenting(client, runtime, member):
    """A signed-in member who consents (no role keys: enough for input validation)."""
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    return tokens


@pytest.fixture
def tokens(consenting, team):
    """A consenting member of a deployment whose role keys exist: questions succeed."""
    return consenting


def _walk(client, tokens, path: str, *, limit: int, extra: str = "") -> list[dict]:
    """Follow ``next_cursor`` to the end; return every item in the order served."""
    items, cursor = [], None
    for _ in range(100):
        url = f"{path}?limit={limit}{extra}" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(url, headers=bearer(tokens))
        assert response.status_code == 200, response.get_json()
        page = response.get_json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the cursor never ended")


def test_asking_needs_consent_and_creates_nothing_without_it(client, runtime, team):
    tokens = login(client, runtime, make_member(runtime))
    response = ask(client, tokens, subject="Knee")
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "consent_required"
    assert count(runtime, Conversation) == 0


def test_asking_before_keys_init_is_503_and_creates_nothing(client, runtime):
    tokens = login(client, runtime, make_member(runtime))
    give_consent(client, tokens)
    response = ask(client, tokens, key="first-try")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "keys_not_initialized"
    assert (count(runtime, Conversation), count(runtime, IdempotencyRecord)) == (0, 0)


def test_a_question_starts_an_open_conversation_sealed_at_rest(client, runtime, member, tokens):
    response = ask(client, tokens, "My knee hurts when I climb stairs.", subject="Knee pain")
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    created = response.get_json()
    now = runtime.clock.now().isoformat().replace("+00:00", "Z")
    assert created["status"] == "open"
    assert created["created_at"] == created["last_message_at"] == now
    (message,) = created["messages"]
    assert set(message) == {"id", "author", "author_name", "body", "created_at", "attachments"}
    assert message["author"] == "member" and message["author_name"] is None
    assert message["body"] == "My knee hurts when I climb stairs."
    assert message["attachments"] == []

    listed = client.get(CONVERSATIONS, headers=bearer(tokens)).get_json()
    fields = (
        "id",
        "subject",
        "status",
        "created_at",
        "last_message_at",
        "status_since",
        "readable",
        "unavailable",
        "in_review",
        "urgent",
        "unread_count",
        "read_through",
        "read_by_other_through",
    )
    summary = {k: created[k] for k in fields}
    assert listed == {"items": [summary], "next_cursor": None}
    one = client.get(f"{CONVERSATIONS}/{created['id']}", headers=bearer(tokens))
    assert one.get_json() == summary

    # Subject and body are content: only ciphertext is stored.
    with runtime.database.transaction() as session:
        row = session.get(Conversation, uuid.UUID(created["id"]))
        stored = session.scalars(select(Message)).one()
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "conversation.start")
        ).one()
    assert b"Knee" not in row.subject_ciphertext
    assert b"stairs" not in stored.body_ciphertext
    assert entry.subject_id == member.id and entry.target_id == created["id"]
    assert "Knee" not in entry.details and "stairs" not in entry.details

    # Without a subject, the subject is null.
    bare = ask(client, tokens, "No subject here.").get_json()
    assert bare["subject"] is None


INVALID_QUESTIONS = [
    ({"emergency_notice": "2026-12"}, "body"),
    ({"body": ""}, "body"),
    ({"body": "   \n"}, "body"),
    ({"body": "x" * 10_001}, "body"),
    ({"body": 42}, "body"),
    ({"body": "ok", "subject": ""}, "subject"),
    ({"body": "ok", "subject": "s" * 201}, "subject"),
    ({"body": "ok", "member_id": "someone"}, "member_id"),
    ({"body": "ok"}, "emergency_notice"),  # the notice not acknowledged
    ({"body": "ok", "emergency_notice": "2020-01"}, "emergency_notice"),  # an old version
    ({"body": "ok", "emergency_notice": "2026-12", "urgent": "very"}, "urgent"),
]
BAD_IDEMPOTENCY_KEYS = ["", "x" * 201, "tab\there", "caf\u00e9"]


def test_invalid_questions_and_keys_are_422_with_details_and_create_nothing(
    client, runtime, consenting
):
    for payload, field in INVALID_QUESTIONS:
        response = client.post(CONVERSATIONS, json=payload, headers=bearer(consenting))
        assert response.status_code == 422, payload
        error = response.get_json()["error"]
        assert error["code"] == "validation_error" and field in error["details"], payload
    for key in BAD_IDEMPOTENCY_KEYS:
        response = ask(client, consenting, key=key)
        assert response.status_code == 422, key
        assert "Idempotency-Key" in response.get_json()["error"]["details"], key
    assert count(runtime, Conversation) == 0


def test_limits_at_the_edge_are_accepted(client, tokens):
    response = ask(client, tokens, "x" * 10_000, subject="s" * 200, key="k" * 200)
    assert response.status_code == 201


def test_a_retried_question_returns_the_first_result_and_creates_nothing(client, runtime, tokens):
    first = ask(client, tokens, "Fever since Monday", subject="Fever", key="app-retry-1")
    again = ask(client, tokens, "Fever since Monday", subject="Fever", key="app-retry-1")
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert (count(runtime, Conversation), count(runtime, Message)) == (1, 1)

    different = ask(client, tokens, "Fever since Tuesday", subject="Fever", key="app-retry-1")
    assert different.status_code == 409
    assert different.get_json()["error"]["code"] == "conflict"
    # The key is taken for starting a conversation: not reusable for a message either.
    messages = f"{CONVERSATIONS}/{first.get_json()['id']}/messages"
    assert (
        send(client, tokens, messages, "Fever since Monday", key="app-retry-1").status_code == 409
    )
    assert (count(runtime, Conversation), count(runtime, Message)) == (1, 1)

    # Keys belong to one account: another member may use the same key.
    other = login(client, runtime, make_member(runtime))
    give_consent(client, other)
    theirs = ask(client, other, "Fever since Monday", subject="Fever", key="app-retry-1")
    assert theirs.status_code == 201 and theirs.get_json()["id"] != first.get_json()["id"]

    # No content in the idempotency table: a keyed MAC and the resource id.
    with runtime.database.transaction() as session:
        records = session.scalars(select(IdempotencyRecord)).all()
    assert len(records) == 2 and all(len(r.request_hash) == 32 for r in records)


def test_a_retried_message_is_sent_once(client, runtime, tokens):
    conversation_id = asked(client, tokens, "Question")
    other_id = asked(client, tokens, "Another question")
    messages = f"{CONVERSATIONS}/{conversation_id}/messages"
    first = send(client, tokens, messages, "Follow-up", key="msg-1")
    again = send(client, tokens, messages, "Follow-up", key="msg-1")
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert count(runtime, Message) == 3

    for bad in ({"body": ""}, {"body": "y" * 10_001}, {"body": "ok", "author": "clinician"}):
        response = client.post(messages, json=bad, headers=bearer(tokens))
        assert response.status_code == 422 and response.get_json()["error"]["details"], bad
    assert send(client, tokens, messages, "Changed", key="msg-1").status_code == 409
    other = send(client, tokens, f"{CONVERSATIONS}/{other_id}/messages", "Follow-up", key="msg-1")
    assert other.status_code == 409
    assert count(runtime, Message) == 3


def test_concurrent_retries_create_one_conversation(app, runtime, tokens):
    """Several clients fire the same request at once: one conversation, one answer for all."""
    results: list = []
    barrier = threading.Barrier(4)

    def fire() -> None:
        client = app.test_client()
        barrier.wait()
        response = ask(client, tokens, "Same question", key="burst-1")
        results.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [status for status, _ in results] == [201] * 4, results
    assert len({body["id"] for _, body in results}) == 1
    assert (count(runtime, Conversation), count(runtime, Message)) == (1, 1)


def test_another_members_conversation_is_not_found_everywhere(client, runtime, tokens):
    theirs = asked(client, tokens, "Private question", subject="Private")
    intruder = login(client, runtime, make_member(runtime))
    give_consent(client, intruder)
    missing = "00000000-0000-4000-8000-000000000000"

    for target in (theirs, missing):
        responses = [
            client.get(f"{CONVERSATIONS}/{target}", headers=bearer(intruder)),
            client.get(f"{CONVERSATIONS}/{target}/messages", headers=bearer(intruder)),
            send(client, intruder, f"{CONVERSATIONS}/{target}/messages", "Hi"),
            send(client, intruder, f"{CONVERSATIONS}/{target}/messages", "Hi", key="k"),
        ]
        for response in responses:
            assert response.status_code == 404
            assert response.get_json() == {"error": {"code": "not_found", "message": "Not found."}}
    listed = client.get(CONVERSATIONS, headers=bearer(intruder)).get_json()
    assert listed == {"items": [], "next_cursor": None}
    assert count(runtime, Message) == 1


def test_conversation_list_walks_newest_activity_first_exactly_once(client, runtime, tokens):
    ids = []
    for n in range(5):
        if n % 2:  # some share an instant: the id breaks the tie
            runtime.clock.advance(seconds=1)
        ids.append(asked(client, tokens, f"Question {n}"))
    # A new message moves the oldest conversation to the top.
    runtime.clock.advance(seconds=1)
    send(client, tokens, f"{CONVERSATIONS}/{ids[0]}/messages", "Any news?")

    walked = _walk(client, tokens, CONVERSATIONS, limit=2)
    assert sorted(c["id"] for c in walked) == sorted(ids)
    assert walked[0]["id"] == ids[0]
    keys = [(c["last_message_at"], c["id"]) for c in walked]
    assert keys == sorted(keys, reverse=True)
    assert _walk(client, tokens, CONVERSATIONS, limit=100) == walked


def test_messages_page_newest_first_or_oldest_first_exactly_once(client, runtime, tokens):
    conversation_id = asked(client, tokens, "Message 0")
    path = f"{CONVERSATIONS}/{conversation_id}/messages"
    for n in range(1, 7):
        runtime.clock.advance(seconds=1)
        assert send(client, tokens, path, f"Message {n}").status_code == 201

    first_page = client.get(f"{path}?limit=3", headers=bearer(tokens)).get_json()
    assert [m["body"] for m in first_page["items"]] == ["Message 6", "Message 5", "Message 4"]
    newest_first = _walk(client, tokens, path, limit=3)
    assert [m["body"] for m in newest_first] == [f"Message {n}" for n in range(6, -1, -1)]
    oldest_first = _walk(client, tokens, path, limit=2, extra="&order=asc")
    assert [m["body"] for m in oldest_first] == [f"Message {n}" for n in range(7)]


BAD_PAGING = [
    "cursor=%%%",
    "cursor=" + base64.urlsafe_b64encode(b'"not a position"').decode(),
    "cursor=" + base64.urlsafe_b64encode(b"true").decode(),
    "cursor=" + base64.urlsafe_b64encode(b'["2026-01-01T00:00:00", "x"]').decode(),
    "limit=0",
    "limit=101",
    "limit=ten",
]


def test_bad_paging_arguments_are_422(client, tokens):
    conversation_id = asked(client, tokens, "Question")
    messages = f"{CONVERSATIONS}/{conversation_id}/messages"
    cases = [(path, query) for path in (CONVERSATIONS, messages) for query in BAD_PAGING]
    cases.append((messages, "order=sideways"))
    for path, query in cases:
        response = client.get(f"{path}?{query}", headers=bearer(tokens))
        assert response.status_code == 422, (path, query, response.get_json())
        error = response.get_json()["error"]
        assert error["code"] == "validation_error" and error["details"]


def test_member_sees_the_doctor_by_display_name_and_closed_means_409(client, runtime, team, tokens):
    conversation_id = asked(client, tokens, "Can I take ibuprofen?")
    messages = f"{CONVERSATIONS}/{conversation_id}/messages"
    doctor = login(client, runtime, team.clinician)
    clinician_path = f"/api/v1/clinician/conversations/{conversation_id}"
    claim(client, doctor, conversation_id)
    assert send(client, doctor, f"{clinician_path}/messages", "Yes, with food.").status_code == 201

    page = client.get(messages, headers=bearer(tokens))
    answer = page.get_json()["items"][0]
    assert answer["author"] == "clinician" and answer["author_name"] == "Dr. M."
    assert team.clinician.email.encode() not in page.data
    assert str(team.clinician.id).encode() not in page.data
    status = client.get(f"{CONVERSATIONS}/{conversation_id}", headers=bearer(tokens))
    assert status.get_json()["status"] == "answered"

    assert client.post(f"{clinician_path}/close", headers=bearer(doctor)).status_code == 200
    refused = send(client, tokens, messages, "One more thing")
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "conflict"
    assert client.get(messages, headers=bearer(tokens)).status_code == 200
    assert count(runtime, Message) == 2


def test_every_message_id_rises_with_its_time(client, runtime, team, tokens):
    """Whatever flow writes a message (a question, a send, a retried send, a clinician's
    answer), its id is time-ordered (``medchat.db.time_ordered_id``): the millisecond it was
    written, so the primary key's index takes each message on its newest pages."""
    conversation_id = asked(client, tokens, "Question?")
    messages = f"{CONVERSATIONS}/{conversation_id}/messages"
    assert send(client, tokens, messages, "More.", key="k-1").status_code == 201
    assert send(client, tokens, messages, "More.", key="k-1").status_code == 201  # replayed
    doctor = login(client, runtime, team.clinician)
    claim(client, doctor, conversation_id)
    answer = f"/api/v1/clinician/conversations/{conversation_id}/messages"
    assert send(client, doctor, answer, "An answer.").status_code == 201

    with runtime.database.transaction() as session:
        rows = session.execute(select(Message.id, Message.created_at)).all()
    assert len(rows) == 3
    for message_id, created_at in rows:
        assert message_id.version == 7
        assert message_id.int >> 80 == (created_at - EPOCH) // timedelta(milliseconds=1)
