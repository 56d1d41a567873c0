"""Bad input never gets a 500 (issue 12, item 12): each case below answered 500
``internal_error``. Each now answers 400 or 422 with the error contract and changes nothing.

- a TOTP code in other digits (``"١٢٣٤٥٦"`` passes ``str.isdigit``; ``compare_digest`` raised);
- a lone surrogate (``"\\ud800"``) in any string: no encoder, blind index or driver takes it;
- NUL in ``first_name`` (PostgreSQL refuses NUL in text);
- JSON nested thousands of levels deep (``RecursionError``, in the rate limiter's key too);
- a cursor out of the database's integer range, or a time with no UTC form.

The class as a whole (every field of every route) is ``test_hostile_strings.py``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from access_control.roles import Role
from medchat.models import Account, AuditEntry, MemberProfile
from medchat.web.json_bodies import MAX_DEPTH
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.messaging import asked, care_team, give_consent

ARABIC_DIGITS = "١٢٣٤٥٦"


def assert_contract(response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.get_data()[:300])
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"]
    return error


def audit_count(runtime) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(select(func.count()).select_from(AuditEntry))  # type: ignore[no-any-return]


def raw_json(client, path: str, text: str, method: str = "POST", **kwargs: Any):
    return client.open(
        path, method=method, data=text.encode(), content_type="application/json", **kwargs
    )


def cursor(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


# -- TOTP codes in other digits -----------------------------------------------------------


def test_a_sign_in_code_in_arabic_digits_is_a_422_and_no_failed_attempt(client, runtime):
    member = make_member(runtime, totp=True)
    before = audit_count(runtime)

    response = client.post(
        "/api/v1/auth/token",
        json={"email": member.email, "password": member.password, "totp_code": ARABIC_DIGITS},
    )

    error = assert_contract(response, 422, "validation_error")
    assert "totp_code" in error["details"]
    assert audit_count(runtime) == before  # no auth.login failure recorded, nothing spent
    login(client, runtime, member)  # and the right code still works


@pytest.mark.parametrize(
    ("path", "field"),
    [("/api/v1/auth/mfa/confirm", "totp_code"), ("/api/v1/auth/password-reset/confirm", None)],
)
def test_other_code_fields_refuse_other_digits(client, runtime, path, field):
    tokens = login(client, runtime, make_member(runtime))
    body = {"totp_code": ARABIC_DIGITS}
    if field is None:
        body |= {"reset_token": "x" * 20, "new_password": "lichen-tundra-pelican-86"}

    response = client.post(path, json=body, headers=bearer(tokens))

    assert "totp_code" in assert_contract(response, 422, "validation_error")["details"]


def test_the_totp_check_itself_refuses_other_digits():
    """The console's TOTP step reaches ``matching_step`` without a schema in front."""
    from datetime import UTC, datetime

    from medchat.identity import totp

    assert totp.matching_step(totp.generate_secret(), ARABIC_DIGITS, datetime.now(UTC)) is None


# -- lone surrogates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/api/v1/auth/token", '{"email": "\\ud800a@example.org", "password": "x"}'),
        ("/api/v1/auth/password-reset", '{"email": "a\\udfff@example.org"}'),
        ("/api/v1/auth/refresh", '{"refresh_token": "\\ud83d"}'),
        ("/api/v1/auth/token", '{"\\ud800": 1, "email": "a@example.org", "password": "x"}'),
        ("/api/v1/auth/register", '{"first_name": ["\\udc00"]}'),
    ],
    ids=["login-email", "reset-email", "refresh-token", "key", "in-a-list"],
)
def test_a_lone_surrogate_anywhere_in_a_body_is_a_400(client, runtime, path, text):
    before = audit_count(runtime)

    error = assert_contract(raw_json(client, path, text), 400, "bad_request")

    assert "surrogate" in error["details"]["json"][0]
    assert audit_count(runtime) == before


def test_a_lone_surrogate_in_a_signed_in_members_field_is_a_400(client, runtime):
    tokens = login(client, runtime, make_member(runtime))
    response = raw_json(
        client, "/api/v1/me", '{"first_name": "Ca\\ud800mille"}', "PATCH", headers=bearer(tokens)
    )
    assert_contract(response, 400, "bad_request")


# -- NUL and other control characters -------------------------------------------------------


def test_nul_in_first_name_is_a_422_and_the_profile_is_unchanged(client, runtime):
    member = make_member(runtime)
    tokens = login(client, runtime, member)

    response = client.patch(
        "/api/v1/me", json={"first_name": "Ca\x00mille"}, headers=bearer(tokens)
    )

    error = assert_contract(response, 422, "validation_error")
    assert list(error["details"]) == ["first_name"]
    with runtime.database.transaction() as session:
        account = session.get(Account, member.id)
        opened = runtime.profiles.open(account.id, "first_name", account.first_name_ciphertext)
        assert opened == "Camille"


@pytest.mark.parametrize("value", ["Ca\x00mille", "Ca\x1bmille", "Ca\x7fmille"])
def test_control_characters_in_registration_are_a_422_and_create_nothing(client, runtime, value):
    response = client.post(
        "/api/v1/auth/register",
        json={
            "email": "nul@example.org",
            "password": "quokka-harbor-lantern-42",
            "first_name": value,
            "last_name": "Durand",
            "birth_date": "1988-04-12",
            "sex": "female",
        },
    )

    assert "first_name" in assert_contract(response, 422, "validation_error")["details"]
    with runtime.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(MemberProfile)) == 0


def test_line_breaks_and_tabs_stay_allowed_in_a_message(client, runtime):
    care_team(runtime)
    tokens = login(client, runtime, make_member(runtime))
    give_consent(client, tokens)
    asked(client, tokens, "Line one\n\tLine two\r\n")


def test_nul_in_a_query_parameter_is_a_422(client, runtime):
    tokens = login(client, runtime, make_member(runtime))
    response = client.get("/api/v1/conversations?cursor=%00", headers=bearer(tokens))
    assert "cursor" in assert_contract(response, 422, "validation_error")["details"]


# -- deep nesting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, '{"a":' * 5_000 + "1" + "}" * 5_000],
    ids=["arrays", "objects"],
)
def test_json_nested_thousands_deep_is_a_400(client, runtime, text):
    before = audit_count(runtime)
    error = assert_contract(raw_json(client, "/api/v1/auth/token", text), 400, "bad_request")
    assert "deeper" in error["details"]["json"][0]
    assert audit_count(runtime) == before


def test_the_depth_limit_is_exact(client):
    def nested(depth: int) -> str:
        return '{"email": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"

    at_limit = raw_json(client, "/api/v1/auth/token", nested(MAX_DEPTH))
    beyond = raw_json(client, "/api/v1/auth/token", nested(MAX_DEPTH + 1))

    assert_contract(at_limit, 422, "validation_error")  # the schema's answer: not a string
    assert_contract(beyond, 400, "bad_request")


def test_a_body_that_is_not_utf8_is_a_400(client):
    response = client.post(
        "/api/v1/auth/token", data=b'{"email": "\xff"}', content_type="application/json"
    )
    assert_contract(response, 400, "bad_request")


# -- cursors --------------------------------------------------------------------------------


@pytest.mark.parametrize("position", [10**30, -(10**30), -1, 2**63])
def test_a_sequence_cursor_out_of_range_is_a_422(client, runtime, position):
    member_tokens = login(client, runtime, make_member(runtime))
    admin_tokens = login(client, runtime, make_staff(runtime, Role.ADMIN))

    for path, tokens in (
        ("/api/v1/me/access-log", member_tokens),
        ("/api/v1/admin/audit", admin_tokens),
    ):
        response = client.get(f"{path}?cursor={cursor(position)}", headers=bearer(tokens))
        assert "cursor" in assert_contract(response, 422, "validation_error")["details"], path


@pytest.mark.parametrize(
    "position",
    [
        ["9999-12-31T23:59:59-05:00", "00000000-0000-0000-0000-000000000001"],
        ["0001-01-01T00:00:00+05:00", "00000000-0000-0000-0000-000000000001"],
        ["2026-01-01T00:00:00", "00000000-0000-0000-0000-000000000001"],
        ["2026-01-01T00:00:00Z", "not-a-uuid"],
        {"at": 1},
        "garbage",
    ],
    ids=["far-future-offset", "far-past-offset", "naive", "bad-id", "object", "string"],
)
def test_an_activity_cursor_without_a_utc_time_is_a_422(client, runtime, position):
    care_team(runtime)
    tokens = login(client, runtime, make_member(runtime))
    give_consent(client, tokens)
    asked(client, tokens)

    response = client.get(
        f"/api/v1/conversations?cursor={cursor(position)}", headers=bearer(tokens)
    )

    assert "cursor" in assert_contract(response, 422, "validation_error")["details"]


@pytest.mark.parametrize("raw", ["%ff%fe", "!!!", "a" * 200, "eyJ"])
def test_garbage_cursors_are_a_422(client, runtime, raw):
    tokens = login(client, runtime, make_member(runtime))
    response = client.get(f"/api/v1/conversations?cursor={raw}", headers=bearer(tokens))
    assert_contract(response, 422, "validation_error")


def test_the_openapi_document_shows_the_400_and_the_real_error_body(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/auth/token"]["post"]
    bad_request = operation["responses"]["400"]
    assert bad_request["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
    }
    assert "bad_request" in bad_request["description"]
    assert "400" not in spec["paths"]["/api/v1/conversations"]["get"]["responses"]  # no body
    schemas = spec["components"]["schemas"]
    assert schemas["Error"]["properties"] == {"error": {"$ref": "#/components/schemas/ErrorBody"}}
    assert set(schemas["ErrorBody"]["properties"]) == {"code", "message", "details"}
    assert schemas["TokenRequest"]["properties"]["totp_code"]["pattern"] == "^[A-Za-z0-9 -]+$"
