"""``/api/v1/admin``: staff accounts with one role each, one-time enrollment, disabling that
ends sessions at once, and who may use the admin API (API.md "Admin", "Authentication"). The
audit trail it lists: ``test_admin_audit_trail.py``.
"""

from __future__ import annotations

import uuid

import pyotp
import pytest
from sqlalchemy import func, select

from access_control.roles import Role
from medchat.models import Account
from tests.support.accounts import PASSWORDS, Person, bearer, login, make_member, make_staff
from tests.support.responses import error_code
from tests.support.staff_enrollment import (
    ACCOUNTS,
    CONFIRM,
    ENROLL,
    create,
    new_staff,
    totp_secret,
)

AUDIT = "/api/v1/admin/audit"


@pytest.fixture
def admin_headers(client, runtime) -> dict[str, str]:
    return bearer(login(client, runtime, make_staff(runtime, Role.ADMIN)))


def count_accounts(runtime) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(select(func.count()).select_from(Account))


# -- creating staff accounts -----------------------------------------------------------


@pytest.mark.parametrize("role", ["clinician", "compliance", "admin"])
def test_admin_creates_staff_account_with_enrollment_token(client, runtime, admin_headers, role):
    body = new_staff(role)

    response = create(client, admin_headers, body)

    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert set(created) == {"id", "enrollment_token"}
    assert created["enrollment_token"]
    with runtime.database.transaction() as session:
        account = session.get(Account, uuid.UUID(created["id"]))
        assert account is not None
        assert account.role == role
        assert account.status == "pending"
        assert account.password_hash is None


def test_create_with_member_or_unknown_role_is_422(client, runtime, admin_headers):
    before = count_accounts(runtime)

    for role in ("member", "superuser", "", "ADMIN", None):
        response = create(client, admin_headers, new_staff(role))
        assert response.status_code == 422, role
        assert "role" in response.get_json()["error"]["details"], role

    assert count_accounts(runtime) == before


def test_create_without_required_fields_is_422(client, admin_headers):
    response = create(client, admin_headers, {"role": "clinician"})
    assert response.status_code == 422
    assert {"email", "first_name", "last_name"} <= set(response.get_json()["error"]["details"])


@pytest.mark.parametrize("second_role", ["clinician", "admin"])
def test_same_email_again_is_409_even_with_another_role(
    client, runtime, admin_headers, second_role
):
    body = new_staff("clinician")
    assert create(client, admin_headers, body).status_code == 201
    before = count_accounts(runtime)

    again = create(
        client, admin_headers, {**body, "email": body["email"].upper(), "role": second_role}
    )

    assert again.status_code == 409
    assert error_code(again) == "conflict"
    assert count_accounts(runtime) == before


def test_email_of_a_member_cannot_become_staff(client, runtime, admin_headers):
    member = make_member(runtime)
    response = create(client, admin_headers, new_staff("clinician", email=member.email))
    assert response.status_code == 409


# -- enrollment ------------------------------------------------------------------------


def test_enrollment_token_sets_password_and_totp_then_is_spent(client, runtime, admin_headers):
    body = new_staff("clinician")
    token = create(client, admin_headers, body).get_json()["enrollment_token"]
    password = PASSWORDS[Role.CLINICIAN]

    start = client.post(ENROLL, json={"enrollment_token": token, "password": password})
    assert start.status_code == 200, start.get_json()
    uri = start.get_json()["provisioning_uri"]
    assert uri.startswith("otpauth://totp/")
    assert "<svg" in start.get_json()["qr_svg"]
    secret = totp_secret(uri)

    confirm = client.post(
        CONFIRM,
        json={"enrollment_token": token, "totp_code": pyotp.TOTP(secret).at(runtime.clock.now())},
    )
    assert confirm.status_code == 200, confirm.get_json()
    codes = confirm.get_json()["recovery_codes"]
    assert len(codes) == len(set(codes)) >= 8

    for path, payload in (
        (ENROLL, {"enrollment_token": token, "password": password}),
        (CONFIRM, {"enrollment_token": token, "totp_code": "123456"}),
    ):
        reused = client.post(path, json=payload)
        assert reused.status_code == 401
        assert error_code(reused) == "invalid_enrollment_token"

    person = Person(None, body["email"], password, Role.CLINICIAN, secret)
    tokens = login(client, runtime, person)  # advances the clock one TOTP step first
    assert tokens["role"] == "clinician"


def test_enrollment_with_a_wrong_totp_code_keeps_account_pending(client, runtime, admin_headers):
    created = create(client, admin_headers, new_staff("compliance")).get_json()
    token = created["enrollment_token"]
    start = client.post(
        ENROLL, json={"enrollment_token": token, "password": PASSWORDS[Role.COMPLIANCE]}
    )
    secret = totp_secret(start.get_json()["provisioning_uri"])
    good = pyotp.TOTP(secret).at(runtime.clock.now())
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"

    response = client.post(CONFIRM, json={"enrollment_token": token, "totp_code": wrong})

    assert response.status_code == 401
    with runtime.database.transaction() as session:
        assert session.get(Account, uuid.UUID(created["id"])).status == "pending"
    ok = client.post(CONFIRM, json={"enrollment_token": token, "totp_code": good})
    assert ok.status_code == 200


def test_unknown_enrollment_token_is_401(client):
    response = client.post(
        ENROLL, json={"enrollment_token": "mce_unknown", "password": PASSWORDS[Role.ADMIN]}
    )
    assert response.status_code == 401
    assert error_code(response) == "invalid_enrollment_token"


def test_expired_enrollment_token_is_401(client, runtime, admin_headers, clock):
    token = create(client, admin_headers, new_staff("clinician")).get_json()["enrollment_token"]

    clock.advance(hours=73)
    response = client.post(
        ENROLL, json={"enrollment_token": token, "password": PASSWORDS[Role.CLINICIAN]}
    )

    assert response.status_code == 401
    assert error_code(response) == "invalid_enrollment_token"


def test_enrollment_token_still_works_just_before_its_lifetime_ends(
    client, runtime, admin_headers, clock
):
    token = create(client, admin_headers, new_staff("clinician")).get_json()["enrollment_token"]

    clock.advance(hours=71)
    response = client.post(
        ENROLL, json={"enrollment_token": token, "password": PASSWORDS[Role.CLINICIAN]}
    )

    assert response.status_code == 200


def test_pending_account_cannot_log_in_before_confirming(client, runtime, admin_headers):
    body = new_staff("clinician")
    token = create(client, admin_headers, body).get_json()["enrollment_token"]
    client.post(ENROLL, json={"enrollment_token": token, "password": PASSWORDS[Role.CLINICIAN]})

    response = client.post(
        "/api/v1/auth/token", json={"email": body["email"], "password": PASSWORDS[Role.CLINICIAN]}
    )

    assert response.status_code in (401, 403)
    assert "access_token" not in (response.get_json() or {})


# -- disabling -------------------------------------------------------------------------


def test_disable_ends_sessions_at_once_and_blocks_login(client, runtime, admin_headers):
    member = make_member(runtime)
    member_tokens = login(client, runtime, member)
    other_admin = make_staff(runtime, Role.ADMIN)
    other_tokens = login(client, runtime, other_admin)
    assert client.get("/api/v1/me", headers=bearer(member_tokens)).status_code == 200
    assert client.get(AUDIT, headers=bearer(other_tokens)).status_code == 200

    for person in (member, other_admin):
        response = client.post(f"{ACCOUNTS}/{person.id}/disable", headers=admin_headers)
        assert response.status_code == 204
        assert response.data == b""

    me = client.get("/api/v1/me", headers=bearer(member_tokens))
    assert me.status_code == 401
    assert error_code(me) == "invalid_token"
    audit_page = client.get(AUDIT, headers=bearer(other_tokens))
    assert audit_page.status_code == 401
    refreshed = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": member_tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401
    denied = client.post(
        "/api/v1/auth/token", json={"email": member.email, "password": member.password}
    )
    assert denied.status_code == 401
    assert error_code(denied) == "invalid_credentials"


def test_disable_unknown_account_is_404(client, admin_headers):
    response = client.post(f"{ACCOUNTS}/{uuid.uuid4()}/disable", headers=admin_headers)
    assert response.status_code == 404
    assert error_code(response) == "not_found"


def test_disabled_staff_cannot_enroll_with_an_unspent_token(client, runtime, admin_headers):
    created = create(client, admin_headers, new_staff("clinician")).get_json()
    disabled = client.post(f"{ACCOUNTS}/{created['id']}/disable", headers=admin_headers)
    assert disabled.status_code == 204

    response = client.post(
        ENROLL,
        json={"enrollment_token": created["enrollment_token"], "password": PASSWORDS["clinician"]},
    )

    assert response.status_code == 401
    assert error_code(response) == "invalid_enrollment_token"


# -- who may use the admin API ---------------------------------------------------------


def _admin_calls() -> list[tuple[str, str, dict | None]]:
    return [
        ("GET", AUDIT, None),
        ("POST", ACCOUNTS, new_staff("clinician")),
        ("POST", f"{ACCOUNTS}/{uuid.uuid4()}/disable", None),
    ]


@pytest.mark.parametrize("role", [Role.MEMBER, Role.CLINICIAN, Role.COMPLIANCE])
def test_other_roles_are_forbidden_on_admin_routes(client, runtime, role):
    person = make_member(runtime) if role == Role.MEMBER else make_staff(runtime, role)
    headers = bearer(login(client, runtime, person))
    before = count_accounts(runtime)

    for method, path, body in _admin_calls():
        response = client.open(path, method=method, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.get_json())
        assert error_code(response) == "forbidden"
    assert count_accounts(runtime) == before


def test_anonymous_is_401_on_admin_routes(client, runtime):
    before = count_accounts(runtime)
    for method, path, body in _admin_calls():
        response = client.open(path, method=method, json=body)
        assert response.status_code == 401, (method, path, response.get_json())
        assert error_code(response) == "not_authenticated"
    assert count_accounts(runtime) == before


def test_invalid_bearer_token_is_401(client):
    response = client.get(AUDIT, headers={"Authorization": "Bearer mca_forged"})
    assert response.status_code == 401
    assert error_code(response) == "invalid_token"
