"""Sessions through the API: refresh, logout, password change.

A sign-in is a family of tokens (``test_auth.py`` covers getting one; ``test_sessions.py``
lists sign-ins and ends them by hand). A refresh rotates the pair and kills the previous one;
a refresh token used twice revokes its family, so a thief's replay ends the stolen session,
and only that one; no refresh outlives the family's end. Logout and a password change end
sessions at once, a member who turns TOTP on sends older sessions back to sign in, and a long
password counts whole (bcrypt alone reads only its first 72 bytes). Several tests kill named
mutants of ``TokenStore`` (``tests/mutation``); their docstrings say which.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat.models import Account, AccountStatus, AuditEntry, AuthToken, TokenKind
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.audit import audit_actions

# -- refresh, logout, password change ----------------------------------------------------------


def test_refresh_rotates_and_kills_the_previous_pair(client, runtime):
    tokens = login(client, runtime, make_member(runtime))
    fresh = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert fresh.status_code == 200
    new = fresh.get_json()
    assert client.get("/api/v1/me", headers=bearer(new)).status_code == 200
    assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 401


def test_refresh_token_reuse_revokes_family(client, runtime):
    tokens = login(client, runtime, make_member(runtime))
    new = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    ).get_json()
    reuse = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert reuse.status_code == 401
    # The thief's replay killed the legitimate new pair too.
    assert client.get("/api/v1/me", headers=bearer(new)).status_code == 401
    assert (
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": new["refresh_token"]}
        ).status_code
        == 401
    )
    assert ("auth.refresh_reuse", "denied") in audit_actions(runtime)


def _refresh(client, token: str):
    return client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def test_an_access_token_is_refused_on_the_refresh_route_and_spends_nothing(client, runtime):
    """Only a refresh token rotates a family. Kills the mutants of ``TokenStore.rotate`` that
    drop or invert its ``kind == REFRESH`` filter (an access token, which opens the same
    sealed keyring, would be spent for a new pair)."""
    tokens = login(client, runtime, make_member(runtime))

    assert _refresh(client, tokens["access_token"]).status_code == 401

    assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 200
    assert _refresh(client, tokens["refresh_token"]).status_code == 200


def test_a_refresh_token_is_not_a_bearer_token(client, runtime):
    """The bearer check looks up access tokens only. Kills the mutants of the kind filter of
    ``_CHECK`` (every authenticated request) and of ``token_row``."""
    tokens = login(client, runtime, make_member(runtime))
    as_bearer = {"Authorization": f"Bearer {tokens['refresh_token']}"}

    assert client.get("/api/v1/me", headers=as_bearer).status_code == 401
    assert client.post("/api/v1/auth/logout", headers=as_bearer).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 200


def test_a_refresh_and_a_replay_touch_only_their_own_family(client, runtime):
    """Two sign-ins of one member are two families: rotating one ends only its own access
    token, and a replay revokes only its own family. Kills the mutants that drop the
    ``family_id`` filter of the access-token delete in ``rotate`` and of ``revoke_family``
    (one refresh, or one thief's replay, would sign every session of everyone out)."""
    person = make_member(runtime)
    phone = login(client, runtime, person)
    laptop = login(client, runtime, person)
    other = login(client, runtime, make_member(runtime))

    renewed = _refresh(client, phone["refresh_token"]).get_json()
    assert client.get("/api/v1/me", headers=bearer(laptop)).status_code == 200
    assert client.get("/api/v1/me", headers=bearer(other)).status_code == 200

    assert _refresh(client, phone["refresh_token"]).status_code == 401  # the replay
    assert client.get("/api/v1/me", headers=bearer(renewed)).status_code == 401
    for session in (laptop, other):
        assert client.get("/api/v1/me", headers=bearer(session)).status_code == 200
        assert _refresh(client, session["refresh_token"]).status_code == 200


@pytest.mark.parametrize("status", [AccountStatus.DISABLED, AccountStatus.PENDING])
def test_an_account_that_is_not_active_cannot_refresh(client, runtime, status):
    """Disabling an account deletes its tokens too; this is the rule under that, for any path
    that leaves a token behind: the refresh looks at the account itself. Kills the mutants of
    ``rotate``'s refusal (``or`` to ``and``, ``not account.is_active`` dropped)."""
    person = make_member(runtime)
    tokens = login(client, runtime, person)
    with runtime.database.transaction() as session:
        session.get(Account, person.id).status = status

    assert _refresh(client, tokens["refresh_token"]).status_code == 401


def test_a_refresh_token_is_refused_at_its_expiry_instant(client, runtime, clock):
    """Expiry is exclusive: at ``expires_at`` the token is dead. Kills the mutant of
    ``rotate``'s ``expires_at <= now`` to ``<``."""
    tokens = login(client, runtime, make_member(runtime))
    with runtime.database.transaction() as session:
        expires_at = session.scalar(
            select(AuthToken.expires_at).where(AuthToken.kind == TokenKind.REFRESH)
        )
    clock.set(expires_at)

    assert _refresh(client, tokens["refresh_token"]).status_code == 401


def test_a_replay_is_audited_against_the_account_and_names_the_family(client, runtime):
    """The record of a replay says whose family was revoked. Kills the mutants of the
    ``auth.refresh_reuse`` entry in ``TokenStore.rotate`` (target or details dropped or
    changed)."""
    person = make_member(runtime)
    tokens = login(client, runtime, person)
    renewed = _refresh(client, tokens["refresh_token"]).get_json()
    assert _refresh(client, tokens["refresh_token"]).status_code == 401
    with runtime.database.transaction() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "auth.refresh_reuse"))
        refreshed = session.scalar(select(AuditEntry).where(AuditEntry.action == "auth.refresh"))
    assert (entry.target_type, entry.target_id) == ("account", str(person.id))
    family = json.loads(refreshed.details)["family"]
    assert json.loads(entry.details) == {"family_revoked": family}
    assert client.get("/api/v1/me", headers=bearer(renewed)).status_code == 401


def test_refresh_never_outlives_the_family(client, runtime, clock):
    tokens = login(client, runtime, make_staff(runtime, Role.ADMIN))
    for _ in range(3):
        clock.advance(hours=4)
        response = client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        if response.status_code != 200:
            break
        tokens = response.get_json()
    # Staff sign-ins end 12 hours after the password and code were given.
    assert response.status_code == 401
    assert clock.now().hour >= 9 + 12 - 1


def test_logout_kills_access_and_refresh_tokens_at_once(client, runtime):
    tokens = login(client, runtime, make_member(runtime))
    assert client.post("/api/v1/auth/logout", headers=bearer(tokens)).status_code == 204
    assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 401
    assert (
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        ).status_code
        == 401
    )


def test_password_change_revokes_every_other_session(client, runtime):
    person = make_member(runtime)
    this = login(client, runtime, person)
    other = login(client, runtime, person)
    new_password = "orchid-tundra-pylon-88"
    changed = client.post(
        "/api/v1/auth/password",
        headers=bearer(this),
        json={"current_password": person.password, "new_password": new_password},
    )
    assert changed.status_code == 204
    assert client.get("/api/v1/me", headers=bearer(this)).status_code == 200
    assert client.get("/api/v1/me", headers=bearer(other)).status_code == 401
    assert (
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}
        ).status_code
        == 401
    )
    old = client.post(
        "/api/v1/auth/token", json={"email": person.email, "password": person.password}
    )
    assert old.status_code == 401
    assert (
        client.post(
            "/api/v1/auth/token", json={"email": person.email, "password": new_password}
        ).status_code
        == 200
    )


def test_password_change_needs_the_current_password_and_a_strong_new_one(client, runtime):
    person = make_member(runtime)
    tokens = login(client, runtime, person)
    wrong = client.post(
        "/api/v1/auth/password",
        headers=bearer(tokens),
        json={"current_password": "not-it-at-all-9", "new_password": "orchid-tundra-pylon-88"},
    )
    assert wrong.status_code == 401
    weak = client.post(
        "/api/v1/auth/password",
        headers=bearer(tokens),
        json={"current_password": person.password, "new_password": "password1"},
    )
    assert weak.status_code == 422
    assert weak.get_json()["error"]["code"] == "weak_password"
    # Neither attempt changed anything.
    assert (
        client.post(
            "/api/v1/auth/token", json={"email": person.email, "password": person.password}
        ).status_code
        == 200
    )


def test_long_passwords_are_not_truncated(client, runtime):
    base = "correct horse battery staple " * 3  # > 72 bytes
    person = make_member(runtime, password=base + "A")
    assert (
        client.post(
            "/api/v1/auth/token", json={"email": person.email, "password": base + "B"}
        ).status_code
        == 401
    )
    assert (
        client.post(
            "/api/v1/auth/token", json={"email": person.email, "password": base + "A"}
        ).status_code
        == 200
    )


def test_sessions_older_than_a_members_totp_must_sign_in_again(client, runtime, clock):
    person = make_member(runtime)
    older = login(client, runtime, person)
    current = login(client, runtime, person)
    uri = client.post(
        "/api/v1/auth/mfa/enroll", json={"password": person.password}, headers=bearer(current)
    ).get_json()["provisioning_uri"]
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    client.post(
        "/api/v1/auth/mfa/confirm",
        headers=bearer(current),
        json={"totp_code": pyotp.TOTP(secret).at(clock.now())},
    )
    assert client.get("/api/v1/me", headers=bearer(current)).status_code == 200
    refused = client.get("/api/v1/me", headers=bearer(older))
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "mfa_required"
