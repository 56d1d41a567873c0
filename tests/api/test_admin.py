"""``/api/v1/admin``: staff accounts with one role each, one-time enrollment, disabling that
ends sessions at once, and an audit trail of metadata only (API.md "Admin", "Authentication").
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from sqlalchemy import func, select

from access_control.roles import Role
from medchat import audit
from medchat.models import Account, AuditEntry
from medchat.schemas.cursors import encode_cursor
from tests.support.accounts import PASSWORDS, Person, bearer, login, make_member, make_staff
from tests.support.responses import error_code

ACCOUNTS = "/api/v1/admin/accounts"
AUDIT = "/api/v1/admin/audit"
ENROLL = "/api/v1/auth/enroll"
CONFIRM = "/api/v1/auth/enroll/confirm"


@pytest.fixture
def admin_headers(client, runtime) -> dict[str, str]:
    return bearer(login(client, runtime, make_staff(runtime, Role.ADMIN)))


def new_staff(role: str = "clinician", **changes) -> dict:
    n = uuid.uuid4().hex[:8]
    body = {
        "email": f"staff-{n}@clinic.example.org",
        "role": role,
        "first_name": "Margot",
        "last_name": f"Zylberstein{n}",
    }
    body.update(changes)
    return body


def create(client, headers, body):
    return client.post(ACCOUNTS, json=body, headers=headers)


def totp_secret(provisioning_uri: str) -> str:
    return parse_qs(urlparse(provisioning_uri).query)["secret"][0]


def count_accounts(runtime) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(select(func.count()).select_from(Account))


def enroll(client, runtime, token: str, password: str) -> str:
    """Complete enrollment; return the TOTP secret."""
    start = client.post(ENROLL, json={"enrollment_token": token, "password": password})
    assert start.status_code == 200, start.get_json()
    secret = totp_secret(start.get_json()["provisioning_uri"])
    code = pyotp.TOTP(secret).at(runtime.clock.now())
    confirm = client.post(CONFIRM, json={"enrollment_token": token, "totp_code": code})
    assert confirm.status_code == 200, confirm.get_json()
    return secret


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


# -- the audit trail -------------------------------------------------------------------


def all_audit_pages(client, headers, limit: int) -> tuple[list[dict], list[str]]:
    items: list[dict] = []
    raw_pages: list[str] = []
    cursor = None
    for _ in range(1000):
        query = {"limit": limit} if cursor is None else {"limit": limit, "cursor": cursor}
        response = client.get(AUDIT, query_string=query, headers=headers)
        assert response.status_code == 200, response.get_json()
        raw_pages.append(response.get_data(as_text=True))
        page = response.get_json()
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items, raw_pages
    raise AssertionError("pagination never ended")


def test_audit_pages_newest_first_and_each_entry_once(client, runtime, admin_headers):
    for _ in range(3):
        assert create(client, admin_headers, new_staff("clinician")).status_code == 201
    with runtime.database.transaction() as session:
        all_seqs = sorted(session.scalars(select(AuditEntry.seq)), reverse=True)
    assert len(all_seqs) >= 7

    for limit in (1, 3, len(all_seqs), 100):
        items, _ = all_audit_pages(client, admin_headers, limit)
        assert [item["seq"] for item in items] == all_seqs, limit

    first = client.get(AUDIT, query_string={"limit": 2}, headers=admin_headers).get_json()
    newest = first["items"][0]
    assert newest["action"] == "account.create"
    assert newest["details"] == {"role": "clinician"}
    assert newest["at"].endswith("Z")
    assert first["next_cursor"]


def test_audit_default_page_size_is_50(client, runtime, admin_headers):
    with runtime.database.transaction() as session:
        for n in range(60):
            audit.record(session, "test.filler", details={"n": n})

    page = client.get(AUDIT, headers=admin_headers).get_json()
    rest = client.get(
        AUDIT, query_string={"cursor": page["next_cursor"]}, headers=admin_headers
    ).get_json()

    assert len(page["items"]) == 50
    assert page["items"][0]["details"] == {"n": 59}
    assert page["items"][-1]["details"] == {"n": 10}
    assert rest["items"][0]["details"] == {"n": 9}


GARBAGE_CURSORS = [
    "not a cursor!",
    "%%%",
    "x" * 201,
    encode_cursor("seven"),
    encode_cursor([5]),
    encode_cursor({"seq": 5}),
    encode_cursor(2.5),
    encode_cursor(True),
]


def test_audit_garbage_cursor_is_422(client, admin_headers):
    answers = {
        cursor: client.get(AUDIT, query_string={"cursor": cursor}, headers=admin_headers)
        for cursor in GARBAGE_CURSORS
    }
    wrong = {
        cursor: (r.status_code, r.get_json(silent=True))
        for cursor, r in answers.items()
        if r.status_code != 422 or error_code(r) != "validation_error"
    }
    assert wrong == {}


def test_audit_limit_out_of_range_is_422(client, admin_headers):
    for limit in ("0", "101", "-1", "ten"):
        response = client.get(AUDIT, query_string={"limit": limit}, headers=admin_headers)
        assert response.status_code == 422, limit
        assert "limit" in response.get_json()["error"]["details"], limit
    for limit in ("1", "100"):
        response = client.get(AUDIT, query_string={"limit": limit}, headers=admin_headers)
        assert response.status_code == 200, limit


def test_audit_entries_hold_no_emails_or_last_names(client, runtime, admin_headers):
    bodies = [new_staff(role) for role in ("clinician", "compliance", "admin")]
    for body in bodies:
        created = create(client, admin_headers, body).get_json()
        password = PASSWORDS[body["role"]]
        enroll(client, runtime, created["enrollment_token"], password)
        # A failed login is audited too: it must not name the address either.
        client.post("/api/v1/auth/token", json={"email": body["email"], "password": "wrong-guess"})
    client.post(
        "/api/v1/auth/register",
        json={
            "email": "patient.zero@example.org",
            "password": PASSWORDS["member"],
            "first_name": "Noor",
            "last_name": "Oyelaran-Whitfield",
            "birth_date": "1975-06-30",
            "sex": "female",
        },
    )
    client.post(
        "/api/v1/auth/token",
        json={"email": "nobody.known@example.org", "password": "whatever-it-is"},
    )

    items, raw_pages = all_audit_pages(client, admin_headers, 5)
    text = "\n".join(raw_pages).lower()
    secrets_to_hide = [b["email"] for b in bodies] + [b["last_name"] for b in bodies]
    secrets_to_hide += ["patient.zero@example.org", "oyelaran", "nobody.known@example.org"]
    for value in secrets_to_hide:
        assert value.lower() not in text, value
    assert "@" not in text
    actions = {item["action"] for item in items}
    assert {"account.create", "auth.enroll_confirm", "auth.login", "account.register"} <= actions
    with runtime.database.transaction() as session:
        stored = json.dumps([e.details for e in session.scalars(select(AuditEntry))]).lower()
    assert "@" not in stored
