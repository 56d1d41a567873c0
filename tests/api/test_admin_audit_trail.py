"""``/api/v1/admin/audit``: the audit trail an admin reads, newest first, each entry once,
in pages with a checked cursor and limit, and metadata only: no email address or last name
(API.md "Admin").
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat import audit
from medchat.models import AuditEntry
from medchat.schemas.cursors import encode_cursor
from tests.support.accounts import PASSWORDS, bearer, login, make_staff
from tests.support.responses import error_code
from tests.support.staff_enrollment import create, enroll, new_staff

AUDIT = "/api/v1/admin/audit"


@pytest.fixture
def admin_headers(client, runtime) -> dict[str, str]:
    return bearer(login(client, runtime, make_staff(runtime, Role.ADMIN)))


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
