"""Expectations and urgency (issue 17, item 4): service hours, the expected response time,
the emergency notice a question acknowledges, urgent questions first, overdue ones flagged
in the queue, the console and the metrics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from medchat.config import Settings
from medchat.errors import ConfigurationError
from medchat.models import Conversation
from tests.support.accounts import bearer, login, make_member
from tests.support.console import console_login
from tests.support.messaging import (
    CONVERSATIONS,
    NOTICE_VERSION,
    ask,
    asked,
    care_team,
    claim,
    give_consent,
    send,
)
from tests.support.metrics import scrape, value

SERVICE = "/api/v1/service"
QUEUE = "/api/v1/clinician/queue"
CASES = "/api/v1/clinician/conversations"


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


def test_the_service_document_is_public_and_says_when_to_expect_an_answer(client, runtime):
    runtime.clock.set(datetime(2026, 12, 7, 9, 30, tzinfo=UTC))  # Monday 10:30 in Paris
    response = client.get(SERVICE)
    assert response.status_code == 200
    body = response.get_json()
    assert body["hours"] == [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "opens": "08:00", "closes": "18:00"}
    ]
    assert body["timezone"] == "Europe/Paris" and body["open_now"] is True
    assert body["expected_response_hours"] == 24
    assert body["emergency_notice"]["version"] == NOTICE_VERSION
    assert "112" in body["emergency_notice"]["text"]
    runtime.clock.set(datetime(2026, 12, 6, 9, 30, tzinfo=UTC))  # Sunday
    assert client.get(SERVICE).get_json()["open_now"] is False
    runtime.clock.set(datetime(2026, 12, 7, 17, 0, tzinfo=UTC))  # Monday 18:00 in Paris
    assert client.get(SERVICE).get_json()["open_now"] is False


def test_the_service_follows_its_settings(make_app):
    app = make_app(
        service_hours="mon-sat 07:30-20:00, sun 10:00-12:00",
        service_timezone="UTC",
        response_target_hours=4,
    )
    body = app.test_client().get(SERVICE).get_json()
    assert [p["days"][0] for p in body["hours"]] == ["mon", "sun"]
    assert body["hours"][0]["opens"] == "07:30" and body["timezone"] == "UTC"
    assert body["expected_response_hours"] == 4


@pytest.mark.parametrize(
    "variables",
    [
        {"MEDCHAT_SERVICE_HOURS": "weekdays 8-18"},
        {"MEDCHAT_SERVICE_HOURS": "fri-mon 08:00-18:00"},
        {"MEDCHAT_SERVICE_HOURS": "mon 18:00-08:00"},
        {"MEDCHAT_SERVICE_TIMEZONE": "Mars/Olympus"},
        {"MEDCHAT_RESPONSE_TARGET_HOURS": "0"},
        {"MEDCHAT_RESPONSE_TARGET_HOURS": "1000"},
    ],
)
def test_bad_service_settings_refuse_to_start(variables):
    with pytest.raises(ConfigurationError, match=next(iter(variables))):
        Settings.from_env(variables)


def test_a_question_records_the_notice_it_acknowledged(client, runtime, patient):
    created = ask(client, patient, "Question")
    assert created.status_code == 201 and created.get_json()["urgent"] is False
    with runtime.database.transaction() as session:
        row = session.get(Conversation, uuid.UUID(created.get_json()["id"]))
        assert (row.notice_version, row.urgent) == (NOTICE_VERSION, False)
    refused = client.post(CONVERSATIONS, json={"body": "No notice"}, headers=bearer(patient))
    assert refused.status_code == 422
    assert "emergency_notice" in refused.get_json()["error"]["details"]


def _ask_urgent(client, tokens, body: str) -> str:
    response = client.post(
        CONVERSATIONS,
        json={"body": body, "emergency_notice": NOTICE_VERSION, "urgent": True},
        headers=bearer(tokens),
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["urgent"] is True
    return response.get_json()["id"]  # type: ignore[no-any-return]


def test_urgent_questions_come_first_in_the_queue_on_every_page(client, runtime, patient, doctor):
    ordered = []
    for n in range(5):
        runtime.clock.advance(seconds=1)
        if n in (1, 3):
            ordered.append(("urgent", _ask_urgent(client, patient, f"Urgent {n}")))
        else:
            ordered.append(("plain", asked(client, patient, f"Plain {n}")))
    expected = [i for kind, i in ordered if kind == "urgent"] + [
        i for kind, i in ordered if kind == "plain"
    ]
    whole = client.get(QUEUE, headers=bearer(doctor)).get_json()["items"]
    assert [c["id"] for c in whole] == expected
    assert [c["urgent"] for c in whole] == [True, True, False, False, False]
    walked, cursor = [], None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(QUEUE + query, headers=bearer(doctor)).get_json()
        walked += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == expected
    listed = client.get(CONVERSATIONS, headers=bearer(patient)).get_json()["items"]
    assert {c["id"]: c["urgent"] for c in listed} == {i: k == "urgent" for k, i in ordered}


def test_a_question_waiting_past_the_target_is_flagged_everywhere(
    app, client, runtime, team, patient
):
    late = asked(client, patient, "Waiting long", subject="Late question")
    runtime.clock.advance(hours=23)
    other = login(client, runtime, make_member(runtime))  # tokens last minutes, not hours
    give_consent(client, other)
    recent = asked(client, other, "Just asked")
    answered = asked(client, other, "Answered")
    doctor = login(client, runtime, team.clinician)
    claim(client, doctor, answered)
    assert send(client, doctor, f"{CASES}/{answered}/messages", "Answer").status_code == 201
    before = {
        c["id"]: c["overdue"] for c in client.get(QUEUE, headers=bearer(doctor)).json["items"]
    }
    assert before == {late: False, recent: False}
    assert value(scrape(client), "medchat_questions_overdue") == 0

    runtime.clock.advance(hours=1, seconds=1)
    doctor = login(client, runtime, team.clinician)
    after = {c["id"]: c["overdue"] for c in client.get(QUEUE, headers=bearer(doctor)).json["items"]}
    assert after == {late: True, recent: False}
    case = client.get(f"{CASES}/{late}", headers=bearer(doctor)).get_json()
    assert case["overdue"] is True
    answered_case = client.get(f"{CASES}/{answered}", headers=bearer(doctor)).get_json()
    assert answered_case["overdue"] is False
    samples = scrape(client)
    assert value(samples, "medchat_questions_overdue") == 1
    assert value(samples, "medchat_questions_waiting") == 2
    assert value(samples, "medchat_questions_urgent_waiting") == 0

    console = app.test_client()
    console_login(console, runtime, team.clinician)
    html = console.get("/console/queue").get_data(as_text=True)
    assert html.count('class="badge overdue"') == 1


def test_a_follow_up_before_the_answer_keeps_the_questions_place_and_its_clock(
    client, runtime, team
):
    """The queue's order and the overdue flag count from the member's first message after the
    last answer (``status_since``), not from their latest: "any news?" neither sends a
    question to the back of the queue nor resets how long it has waited."""
    member = make_member(runtime)
    patient = login(client, runtime, member)
    give_consent(client, patient)
    first = asked(client, patient, "Asked first")
    asked_at = runtime.clock.now()
    runtime.clock.advance(minutes=1)
    other = login(client, runtime, make_member(runtime))
    give_consent(client, other)
    second = asked(client, other, "Asked second")
    runtime.clock.advance(minutes=1)
    follow_up = send(client, patient, f"{CONVERSATIONS}/{first}/messages", "Any news?")
    assert follow_up.status_code == 201

    def queue() -> list[dict]:
        doctor = login(client, runtime, team.clinician)
        return client.get(QUEUE, headers=bearer(doctor)).get_json()["items"]

    listed = queue()
    assert [c["id"] for c in listed] == [first, second]
    assert listed[0]["status_since"] == asked_at.isoformat().replace("+00:00", "Z")
    assert listed[0]["last_message_at"] > listed[0]["status_since"]

    # 24 h after the question, 23 h 58 min after the follow-up: overdue all the same.
    runtime.clock.advance(hours=23, minutes=58, seconds=1)
    assert {c["id"]: c["overdue"] for c in queue()} == {first: True, second: True}
    assert value(scrape(client), "medchat_questions_overdue") == 2

    # Answered, then asked again: now it waits from the new message, behind the other one.
    doctor = login(client, runtime, team.clinician)
    claim(client, doctor, first)
    assert send(client, doctor, f"{CASES}/{first}/messages", "Answer").status_code == 201
    answered_at = runtime.clock.now()
    runtime.clock.advance(minutes=1)
    patient = login(client, runtime, member)
    assert send(client, patient, f"{CONVERSATIONS}/{first}/messages", "Again").status_code == 201
    asked_again_at = runtime.clock.now()
    listed = queue()
    assert [c["id"] for c in listed] == [second, first]
    assert {c["id"]: c["overdue"] for c in listed} == {first: False, second: True}
    with runtime.database.transaction() as session:
        row = session.get(Conversation, uuid.UUID(first))
        assert row.status_since == asked_again_at > answered_at
