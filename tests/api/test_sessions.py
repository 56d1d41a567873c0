"""Sign-ins and devices (issue 17, item 6): ``/api/v1/auth/sessions`` and the admin's
``POST /api/v1/admin/accounts/{id}/sign-out``.

Each test checks the token itself afterwards (a refresh, a request), not only the list: the
rule is that an ended sign-in's tokens stop working, on the next request.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat.models import AuditEntry, AuthToken
from tests.support.accounts import Person, bearer, login, make_member, make_staff
from tests.support.responses import error_code

SESSIONS = "/api/v1/auth/sessions"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def sign_in(client, runtime, person: Person, user_agent: str) -> dict:
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    try:
        return login(client, runtime, person)
    finally:
        del client.environ_base["HTTP_USER_AGENT"]


def refreshes(client, tokens: dict) -> bool:
    answer = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    return answer.status_code == 200


def actions(runtime) -> list[str]:
    with runtime.database.transaction() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


@pytest.fixture
def member(runtime) -> Person:
    return make_member(runtime)


def test_list_shows_each_sign_in_its_device_and_which_is_current(client, runtime, member):
    laptop = sign_in(client, runtime, member, FIREFOX)
    runtime.clock.advance(seconds=60)
    phone = sign_in(client, runtime, member, IPHONE)
    answer = client.get(SESSIONS, headers=bearer(phone))
    assert answer.status_code == 200
    items = answer.get_json()["items"]
    assert [item["device"] for item in items] == ["Safari on iOS", "Firefox on Linux"]
    assert [item["current"] for item in items] == [True, False]
    assert {item["kind"] for item in items} == {"api"}
    assert {item["place"] for item in items} == {"same_network"}
    from_laptop = client.get(SESSIONS, headers=bearer(laptop)).get_json()["items"]
    assert [item["current"] for item in from_laptop] == [False, True]
    # Neither the User-Agent nor an address is kept, only the label and a MAC.
    with runtime.database.transaction() as session:
        stored = session.scalars(select(AuthToken)).all()
    assert {row.device for row in stored} == {"Safari on iOS", "Firefox on Linux"}
    assert all(b"127.0.0" not in (row.network or b"") for row in stored)


def test_refresh_keeps_the_sign_in_and_its_device(client, runtime, member):
    tokens = sign_in(client, runtime, member, FIREFOX)
    before = client.get(SESSIONS, headers=bearer(tokens)).get_json()["items"]
    runtime.clock.advance(seconds=120)
    answer = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    after = client.get(SESSIONS, headers=bearer(answer.get_json())).get_json()["items"]
    assert len(after) == 1
    assert after[0]["id"] == before[0]["id"]
    assert after[0]["device"] == "Firefox on Linux"
    # The network's MAC is carried over too (kills the mutant of TokenStore.rotate that drops
    # it from the new pair's SignInOrigin: the sign-in would lose its place).
    assert after[0]["place"] == before[0]["place"] == "same_network"
    assert after[0]["last_used_at"] > before[0]["last_used_at"]
    assert after[0]["created_at"] == before[0]["created_at"]


def test_deleting_a_sign_in_kills_its_tokens(client, runtime, member):
    laptop = sign_in(client, runtime, member, FIREFOX)
    phone = sign_in(client, runtime, member, IPHONE)
    items = client.get(SESSIONS, headers=bearer(phone)).get_json()["items"]
    (other,) = [item["id"] for item in items if not item["current"]]
    assert client.delete(f"{SESSIONS}/{other}", headers=bearer(phone)).status_code == 204
    assert client.get("/api/v1/me", headers=bearer(laptop)).status_code == 401
    assert not refreshes(client, laptop)
    assert client.get("/api/v1/me", headers=bearer(phone)).status_code == 200
    remaining = client.get(SESSIONS, headers=bearer(phone)).get_json()["items"]
    assert [item["current"] for item in remaining] == [True]
    assert "auth.sign_in_end" in actions(runtime)


def test_someone_elses_or_an_unknown_sign_in_is_404(client, runtime, member):
    other = make_member(runtime)
    theirs = login(client, runtime, other)
    mine = login(client, runtime, member)
    their_id = client.get(SESSIONS, headers=bearer(theirs)).get_json()["items"][0]["id"]
    for family in (their_id, str(uuid.uuid4())):
        answer = client.delete(f"{SESSIONS}/{family}", headers=bearer(mine))
        assert answer.status_code == 404
        assert error_code(answer) == "not_found"
    assert refreshes(client, theirs)


def test_revoke_others_keeps_the_current_sign_in(client, runtime, member):
    first = sign_in(client, runtime, member, FIREFOX)
    second = sign_in(client, runtime, member, IPHONE)
    current = login(client, runtime, member)
    answer = client.post(f"{SESSIONS}/revoke-others", headers=bearer(current))
    assert answer.status_code == 204
    for ended in (first, second):
        assert client.get("/api/v1/me", headers=bearer(ended)).status_code == 401
        assert not refreshes(client, ended)
    assert client.get("/api/v1/me", headers=bearer(current)).status_code == 200
    items = client.get(SESSIONS, headers=bearer(current)).get_json()["items"]
    assert [item["current"] for item in items] == [True]
    assert refreshes(client, current)
    assert "auth.sign_in_end_others" in actions(runtime)


def test_an_admin_ends_a_staff_members_sign_ins_not_a_members(client, runtime, member):
    admin = make_staff(runtime, Role.ADMIN)
    clinician = make_staff(runtime, Role.CLINICIAN)
    admin_auth = bearer(login(client, runtime, admin))
    theirs = login(client, runtime, clinician)
    answer = client.post(f"/api/v1/admin/accounts/{clinician.id}/sign-out", headers=admin_auth)
    assert answer.status_code == 204
    assert not refreshes(client, theirs)
    assert "account.sign_out" in actions(runtime)
    # The credentials stay: the clinician signs in again.
    login(client, runtime, clinician)
    refused = client.post(f"/api/v1/admin/accounts/{member.id}/sign-out", headers=admin_auth)
    assert refused.status_code == 409
    own = client.post(f"/api/v1/admin/accounts/{admin.id}/sign-out", headers=admin_auth)
    assert own.status_code == 409
    unknown = client.post(f"/api/v1/admin/accounts/{uuid.uuid4()}/sign-out", headers=admin_auth)
    assert unknown.status_code == 404


def test_a_sign_in_from_another_network_has_no_place(client, runtime, member):
    client.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    away = login(client, runtime, member)
    client.environ_base["REMOTE_ADDR"] = "198.51.100.20"
    here = login(client, runtime, member)
    neighbour = dict(client.environ_base, REMOTE_ADDR="198.51.100.99")
    answer = client.get(SESSIONS, headers=bearer(here), environ_base=neighbour)
    places = {item["current"]: item["place"] for item in answer.get_json()["items"]}
    assert places == {True: "same_network", False: None}
    assert client.get(SESSIONS, headers=bearer(away)).status_code == 200
