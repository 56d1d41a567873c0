"""Sign-in through the API: registration, credentials, 2FA, tokens, lockout.

How an account comes to exist and how a caller gets its tokens. Registration answers alike
whether the address is new or taken, and sign-in alike for an unknown account and a wrong
password (after the same bcrypt work), so neither tells an outsider who has an account. Tokens
are stored only as hashes and expire; staff need a second factor, and each TOTP step or
recovery code works once; repeated failures lock an account (with Retry-After), or an address.
What a session lives through once it exists (refresh, logout, password change) is in
``test_auth_sessions.py``.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from sqlalchemy import func, select

from access_control.roles import Role
from medchat.models import Account, AuthToken, TokenKind
from tests.support.accounts import REGISTRATION, bearer, code_for, login, make_member, make_staff
from tests.support.audit import audit_actions


def _count(runtime, model) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(select(func.count()).select_from(model))


# -- registration ----------------------------------------------------------------------------


def test_register_new_and_taken_address_answer_identically(client, runtime):
    first = client.post("/api/v1/auth/register", json=REGISTRATION)
    again = client.post("/api/v1/auth/register", json={**REGISTRATION, "first_name": "Other"})
    assert first.status_code == again.status_code == 202
    assert first.get_json() == again.get_json() == {"status": "accepted"}
    assert _count(runtime, Account) == 1
    # The existing account is unchanged: the original password still works.
    token = client.post(
        "/api/v1/auth/token",
        json={"email": REGISTRATION["email"], "password": REGISTRATION["password"]},
    )
    assert token.status_code == 200
    me = client.get("/api/v1/me", headers=bearer(token.get_json())).get_json()
    assert me["first_name"] == "Jeanne"


def test_register_taken_address_is_matched_case_insensitively(client, runtime):
    client.post("/api/v1/auth/register", json=REGISTRATION)
    client.post("/api/v1/auth/register", json={**REGISTRATION, "email": "New.Member@Example.org"})
    assert _count(runtime, Account) == 1


@pytest.mark.parametrize(
    "password",
    ["short1!", "password123", "MoreauJeanne", "new.member@example.org"],
    ids=["too-short", "common", "own-name", "own-email"],
)
def test_register_refuses_weak_passwords_with_feedback(client, runtime, password):
    response = client.post("/api/v1/auth/register", json={**REGISTRATION, "password": password})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "weak_password"
    assert error["details"]["password"]
    assert _count(runtime, Account) == 0


def test_register_validates_fields_and_names_them(client, runtime):
    response = client.post(
        "/api/v1/auth/register",
        json={**REGISTRATION, "email": "not-an-email", "sex": "robot", "birth_date": "2999-01-01"},
    )
    assert response.status_code == 422
    details = response.get_json()["error"]["details"]
    assert {"email", "sex", "birth_date"} <= set(details)
    assert _count(runtime, Account) == 0


def test_register_refuses_unknown_fields(client):
    response = client.post("/api/v1/auth/register", json={**REGISTRATION, "role": "admin"})
    assert response.status_code == 422
    assert "role" in response.get_json()["error"]["details"]


def test_malformed_json_is_a_400_with_the_error_contract(client, runtime):
    response = client.post(
        "/api/v1/auth/register", data="{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"
    assert _count(runtime, Account) == 0


def test_registration_can_be_switched_off(make_app):
    app = make_app(registration_open=False)
    response = app.test_client().post("/api/v1/auth/register", json=REGISTRATION)
    assert response.status_code == 403
    assert _count(app.extensions["medchat"], Account) == 0


# -- credentials -----------------------------------------------------------------------------


def test_unknown_account_and_wrong_password_answer_identically(client, runtime):
    person = make_member(runtime)
    unknown = client.post(
        "/api/v1/auth/token", json={"email": "nobody@example.org", "password": "x" * 12}
    )
    wrong = client.post("/api/v1/auth/token", json={"email": person.email, "password": "x" * 12})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.get_json() == wrong.get_json()
    assert unknown.get_json()["error"]["code"] == "invalid_credentials"
    # Failed sign-ins are audited although the request fails.
    assert audit_actions(runtime).count(("auth.login", "failure")) == 2


def test_unknown_accounts_cost_a_bcrypt_check_of_the_configured_cost(runtime):
    # The dummy hash has the same cost as real ones, so both paths do the same work.
    assert runtime.hasher._dummy.startswith(b"$2b$%02d$" % runtime.settings.bcrypt_rounds)
    assert runtime.hasher.verify("anything-at-all", None) is False


def test_login_returns_the_token_contract(client, runtime):
    person = make_member(runtime)
    body = client.post(
        "/api/v1/auth/token", json={"email": person.email, "password": person.password}
    ).get_json()
    assert body["token_type"] == "Bearer"
    assert body["role"] == "member"
    assert body["expires_in"] == 15 * 60
    assert body["access_token"] != body["refresh_token"]


def test_tokens_are_stored_only_as_hashes(client, runtime):
    person = make_member(runtime)
    tokens = login(client, runtime, person)
    with runtime.database.transaction() as session:
        stored = [t.token_hash for t in session.scalars(select(AuthToken))]
    raw = {tokens["access_token"].encode(), tokens["refresh_token"].encode()}
    assert len(stored) == 2
    assert not any(r in s or s == r for s in stored for r in raw)


def test_access_token_expires(client, runtime, clock):
    tokens = login(client, runtime, make_member(runtime))
    clock.advance(minutes=16)
    response = client.get("/api/v1/me", headers=bearer(tokens))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"


def test_an_access_token_is_refused_at_its_expiry_instant(client, runtime, clock):
    """Expiry is exclusive. Kills the mutant of ``_live``'s ``expires_at > now`` to ``>=``."""
    tokens = login(client, runtime, make_member(runtime))
    with runtime.database.transaction() as session:
        expires_at = session.scalar(
            select(AuthToken.expires_at).where(AuthToken.kind == TokenKind.ACCESS)
        )
    clock.set(expires_at - timedelta(microseconds=1))
    assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 200
    clock.set(expires_at)
    assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 401


def test_garbage_bearer_token_is_refused(client):
    response = client.get("/api/v1/me", headers={"Authorization": "Bearer nonsense"})
    assert response.status_code == 401
    assert client.get("/api/v1/me").status_code == 401


# -- second factor ---------------------------------------------------------------------------


def test_staff_without_code_get_mfa_required(client, runtime):
    person = make_staff(runtime, Role.CLINICIAN)
    response = client.post(
        "/api/v1/auth/token", json={"email": person.email, "password": person.password}
    )
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "mfa_required"


def test_staff_with_a_wrong_code_are_refused(client, runtime, clock):
    person = make_staff(runtime, Role.ADMIN)
    clock.advance(seconds=30)
    wrong = f"{(int(code_for(person, runtime)) + 1) % 1_000_000:06d}"
    response = client.post(
        "/api/v1/auth/token",
        json={"email": person.email, "password": person.password, "totp_code": wrong},
    )
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_mfa_code"


def test_a_totp_code_is_accepted_once(client, runtime, clock):
    person = make_staff(runtime, Role.CLINICIAN)
    clock.advance(seconds=30)
    body = {
        "email": person.email,
        "password": person.password,
        "totp_code": code_for(person, runtime),
    }
    assert client.post("/api/v1/auth/token", json=body).status_code == 200
    replay = client.post("/api/v1/auth/token", json=body)
    assert replay.status_code == 401
    assert replay.get_json()["error"]["code"] == "invalid_mfa_code"


def test_an_older_totp_step_is_refused_after_a_newer_one(client, runtime, clock):
    person = make_staff(runtime, Role.CLINICIAN)
    clock.advance(seconds=60)
    older = pyotp.TOTP(person.totp_secret).at(clock.now().timestamp() - 30)
    newer = code_for(person, runtime)
    base = {"email": person.email, "password": person.password}
    assert client.post("/api/v1/auth/token", json={**base, "totp_code": newer}).status_code == 200
    assert client.post("/api/v1/auth/token", json={**base, "totp_code": older}).status_code == 401


def test_staff_who_never_enrolled_get_an_enrollment_token(client, runtime, clock):
    admin = make_staff(runtime, Role.ADMIN)
    created = client.post(
        "/api/v1/admin/accounts",
        headers=bearer(login(client, runtime, admin)),
        json={
            "email": "dr.new@example.org",
            "role": "clinician",
            "first_name": "Nora",
            "last_name": "Petit",
        },
    ).get_json()
    password = "saffron-kettle-nebula-61"
    started = client.post(
        "/api/v1/auth/enroll",
        json={"enrollment_token": created["enrollment_token"], "password": password},
    )
    assert started.status_code == 200
    # Enrollment is left unconfirmed: sign-in hands out a new enrollment token instead.
    response = client.post(
        "/api/v1/auth/token", json={"email": "dr.new@example.org", "password": password}
    )
    assert response.status_code == 403
    error = response.get_json()["error"]
    assert error["code"] == "mfa_enrollment_required"
    fresh_token = error["details"]["enrollment_token"]
    # That token works on the enrollment endpoints (and the admin's earlier one is dead).
    restarted = client.post(
        "/api/v1/auth/enroll", json={"enrollment_token": fresh_token, "password": password}
    )
    assert restarted.status_code == 200
    old = client.post(
        "/api/v1/auth/enroll",
        json={"enrollment_token": created["enrollment_token"], "password": password},
    )
    assert old.status_code == 401
    secret = parse_qs(urlparse(restarted.get_json()["provisioning_uri"]).query)["secret"][0]
    confirmed = client.post(
        "/api/v1/auth/enroll/confirm",
        json={"enrollment_token": fresh_token, "totp_code": pyotp.TOTP(secret).at(clock.now())},
    )
    assert confirmed.status_code == 200
    assert len(confirmed.get_json()["recovery_codes"]) == 10
    # ...but it is not a session: it opens nothing else.
    assert (
        client.get("/api/v1/me", headers={"Authorization": f"Bearer {fresh_token}"}).status_code
        == 401
    )


def test_recovery_code_works_once(client, runtime, clock):
    admin = make_staff(runtime, Role.ADMIN)
    created = client.post(
        "/api/v1/admin/accounts",
        headers=bearer(login(client, runtime, admin)),
        json={
            "email": "officer@example.org",
            "role": "compliance",
            "first_name": "Léa",
            "last_name": "Roux",
        },
    ).get_json()
    password = "saffron-kettle-nebula-61"
    uri = client.post(
        "/api/v1/auth/enroll",
        json={"enrollment_token": created["enrollment_token"], "password": password},
    ).get_json()["provisioning_uri"]
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    codes = client.post(
        "/api/v1/auth/enroll/confirm",
        json={
            "enrollment_token": created["enrollment_token"],
            "totp_code": pyotp.TOTP(secret).at(clock.now()),
        },
    ).get_json()["recovery_codes"]
    body = {"email": "officer@example.org", "password": password, "totp_code": codes[0]}
    assert client.post("/api/v1/auth/token", json=body).status_code == 200
    again = client.post("/api/v1/auth/token", json=body)
    assert again.status_code == 401
    assert again.get_json()["error"]["code"] == "invalid_mfa_code"
    # Another unused code still works (written without dashes, in capitals).
    other = codes[1].replace("-", "").upper()
    assert client.post("/api/v1/auth/token", json={**body, "totp_code": other}).status_code == 200


def test_member_can_opt_into_totp_and_then_needs_it(client, runtime, clock):
    person = make_member(runtime)
    tokens = login(client, runtime, person)
    uri = client.post(
        "/api/v1/auth/mfa/enroll", json={"password": person.password}, headers=bearer(tokens)
    ).get_json()["provisioning_uri"]
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    confirm = client.post(
        "/api/v1/auth/mfa/confirm",
        headers=bearer(tokens),
        json={"totp_code": pyotp.TOTP(secret).at(clock.now())},
    )
    assert confirm.status_code == 200
    without = client.post(
        "/api/v1/auth/token", json={"email": person.email, "password": person.password}
    )
    assert without.get_json()["error"]["code"] == "mfa_required"
    # A stolen access token cannot swap the second factor for one of its own.
    again = client.post(
        "/api/v1/auth/mfa/enroll", json={"password": person.password}, headers=bearer(tokens)
    )
    assert again.status_code == 409


# -- abuse limits ----------------------------------------------------------------------------


def test_repeated_failures_lock_the_account_with_retry_after(client, runtime):
    person = make_member(runtime)
    wrong = {"email": person.email, "password": "not-the-password-1"}
    for _ in range(5):
        assert client.post("/api/v1/auth/token", json=wrong).status_code == 401
    locked = client.post(
        "/api/v1/auth/token", json={"email": person.email, "password": person.password}
    )
    assert locked.status_code == 429
    assert locked.get_json()["error"]["code"] == "rate_limited"
    assert int(locked.headers["Retry-After"]) > 0
    assert ("request.denied", "denied") in audit_actions(runtime)


def test_lockout_is_per_account_and_the_same_for_unknown_addresses(client, runtime):
    person = make_member(runtime)
    for _ in range(5):
        client.post("/api/v1/auth/token", json={"email": "ghost@example.org", "password": "x" * 12})
    assert (
        client.post(
            "/api/v1/auth/token", json={"email": "ghost@example.org", "password": "x" * 12}
        ).status_code
        == 429
    )
    # Another account from the same address is not locked by those failures.
    ok = client.post(
        "/api/v1/auth/token", json={"email": person.email, "password": person.password}
    )
    assert ok.status_code == 200


def test_per_address_limit_applies_across_accounts(client, runtime):
    statuses = [
        client.post(
            "/api/v1/auth/token", json={"email": f"p{i}@example.org", "password": "x" * 12}
        ).status_code
        for i in range(31)
    ]
    assert statuses[:30] == [401] * 30
    assert statuses[30] == 429
