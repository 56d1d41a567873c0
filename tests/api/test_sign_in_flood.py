"""A sign-in flood starves no reader (issue 15): password work is bounded per process.

The app is built with one slot and a tiny queue (``password_work_slots``,
``password_work_wait_ms``); the test fills the gate with work that blocks on an event, then
shows: a sign-in answers 503 ``dependency_down`` with ``Retry-After`` at once (API and
console, never a 500, never a "wrong password"), the same for an unknown and a known account,
audited, counted as no failure; and a member's reads are served while the gate is full.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select

from access_control.password_work import DEPENDENCY, RETRY_AFTER_SECONDS
from access_control.roles import Role
from medchat.models import AuditEntry
from medchat.services.accounts import AccountService
from medchat.web.refusal_tally import EXTENSION as TALLY
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.console import post_form
from tests.support.messaging import asked, care_team, give_consent
from tests.support.password_work import gate_full

TOKEN = "/api/v1/auth/token"


@pytest.fixture
def app(make_app: Any) -> Any:
    # A long wait: the queued work stays queued while the test runs, so a refusal is the
    # full queue's (at once), never a wait that happened to expire.
    return make_app(password_work_slots=1, password_work_wait_ms=10_000)


def retry_after(response: Any) -> int:
    """Ours, or later: on a throttled route the rate limiter raises it to its window's reset."""
    seconds = int(response.headers["Retry-After"])
    assert seconds >= RETRY_AFTER_SECONDS
    return seconds


def refused(response: Any) -> dict[str, Any]:
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    retry_after(response)
    error = response.get_json()["error"]
    assert error["code"] == "dependency_down"
    assert error["details"] == {"dependency": DEPENDENCY}
    return error  # type: ignore[no-any-return]


def actions(runtime: Any, action: str) -> list[AuditEntry]:
    with runtime.database.transaction() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        session.expunge_all()
    return rows


def test_a_full_gate_answers_503_at_once_alike_for_known_and_unknown(client, runtime):
    member = make_member(runtime)
    known = {"email": member.email, "password": member.password}
    unknown = {"email": "nobody@example.org", "password": member.password}
    with gate_full(runtime.password_work):
        started = time.monotonic()
        first, second = client.post(TOKEN, json=known), client.post(TOKEN, json=unknown)
        elapsed = time.monotonic() - started
    assert refused(first) == refused(second)
    assert first.get_data() == second.get_data()
    assert elapsed < 2  # not held for the 10 s queue wait: refused on arrival
    # Audited like an outage, and no failed sign-in was recorded or counted: here each
    # refusal was the first of its endpoint in its window (the API and the console differ
    # in nothing else; the tally is tested below).
    assert len(actions(runtime, "request.dependency_down")) >= 1
    assert actions(runtime, "auth.login") == []
    assert client.post(TOKEN, json=known).status_code == 200  # free again: signs in


def test_a_refused_sign_in_looks_nothing_up(client, runtime, monkeypatch):
    """The slot is taken before the account lookup: a flood's refusals cost no query."""
    member = make_member(runtime)
    lookups = []
    real = AccountService.find_by_email
    monkeypatch.setattr(
        AccountService,
        "find_by_email",
        lambda self, email: lookups.append(email) or real(self, email),
    )
    with gate_full(runtime.password_work):
        refused(client.post(TOKEN, json={"email": member.email, "password": member.password}))
    assert lookups == []
    assert (
        client.post(TOKEN, json={"email": member.email, "password": member.password}).status_code
        == 200
    )
    assert lookups == [member.email]


def test_readers_are_served_while_the_gate_is_full(client, runtime):
    care_team(runtime)  # someone to ask, holding the role keys
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    conversation = asked(client, tokens, "Is this rash serious?")
    with gate_full(runtime.password_work):
        started = time.monotonic()
        for _ in range(5):
            page = client.get(
                f"/api/v1/conversations/{conversation}/messages?limit=50", headers=bearer(tokens)
            )
            assert page.status_code == 200
        assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 200
        assert time.monotonic() - started < 5
        refused(client.post(TOKEN, json={"email": member.email, "password": member.password}))


def test_registration_and_step_up_are_bounded_too(client, runtime):
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    registration = {
        "email": "new.member@example.org",
        "password": "quokka-harbor-lantern-42",
        "first_name": "Jeanne",
        "last_name": "Moreau",
        "birth_date": "1979-02-03",
        "sex": "female",
    }
    with gate_full(runtime.password_work):
        refused(client.post("/api/v1/auth/register", json=registration))
        refused(
            client.post(
                "/api/v1/me/deletion", json={"password": member.password}, headers=bearer(tokens)
            )
        )
    assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 200  # not erased


def test_the_console_shows_unavailable_never_wrong_password(client, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    with gate_full(runtime.password_work):
        response = post_form(
            client, "/console/login", {"email": clinician.email, "password": clinician.password}
        )
    assert response.status_code == 503
    retry_after(response)
    page = response.get_data(as_text=True)
    assert "Temporarily unavailable" in page
    assert "wrong" not in page.lower()


def test_refusals_are_audited_as_a_tally_per_window(app, client, runtime):
    """The first refusal of each second is written with the number it stands for; the rest
    only count: a flood's refusals cost no audit entry each (``web.refusal_tally``)."""
    tally = app.extensions[TALLY]
    now = [1000.0]
    tally.clock = lambda: now[0]
    member = make_member(runtime)
    attempt = {"email": member.email, "password": member.password}
    with gate_full(runtime.password_work):
        for _ in range(5):
            refused(client.post(TOKEN, json=attempt))
        now[0] += 1.5
        refused(client.post(TOKEN, json=attempt))
    entries = actions(runtime, "request.dependency_down")
    assert [json.loads(entry.details)["refused"] for entry in entries] == [1, 5]
    assert {json.loads(entry.details)["dependency"] for entry in entries} == {DEPENDENCY}
