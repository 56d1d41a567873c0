"""HTTP hygiene: the JSON error contract everywhere, security headers, no caching, no CORS
unless configured, the OpenAPI document, health and readiness (API.md "Conventions",
"Health"; SECURITY-MODEL "Transport and headers", "Bad input").
"""

from __future__ import annotations

from datetime import date

import pytest

from medchat import create_app
from tests.support.accounts import PASSWORDS, bearer, login, make_member
from tests.support.clock import ManualClock

TOKEN = "/api/v1/auth/token"
REGISTER = "/api/v1/auth/register"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return body["error"]


def valid_registration(**changes) -> dict:
    body = {
        "email": "hygiene@example.org",
        "password": PASSWORDS["member"],
        "first_name": "Jonas",
        "last_name": "Verhoeven",
        "birth_date": "1990-02-03",
        "sex": "male",
    }
    body.update(changes)
    return body


# -- the error contract ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v2/auth/token", "/api/v1/me/x"])
def test_unknown_api_route_is_a_json_404(client, path):
    response = client.get(path)
    assert_error(response, 404, "not_found")
    assert b"<html" not in response.data.lower()


def test_wrong_method_is_a_json_405_with_allow_header(client):
    response = client.get(TOKEN)
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    assert "GET" not in response.headers["Allow"]


def test_unexpected_exception_is_a_json_500_without_trace(make_app):
    app = make_app()

    def boom():
        raise RuntimeError("secret-internal-detail in /srv/medchat/app.py line 42")

    app.add_url_rule("/boom", view_func=boom)
    response = app.test_client().get("/boom")

    error = assert_error(response, 500, "internal_error")
    text = response.get_data(as_text=True)
    assert "Traceback" not in text
    assert "secret-internal-detail" not in text
    assert "RuntimeError" not in text
    assert "secret-internal-detail" not in error["message"]


def test_malformed_json_is_400_bad_request(client):
    response = client.post(
        TOKEN, data='{"email": "a@b.c", "password":', content_type="application/json"
    )
    assert_error(response, 400, "bad_request")


def test_invalid_fields_are_422_naming_each_field(client):
    response = client.post(
        REGISTER,
        json=valid_registration(email="not-an-email", sex="robot", birth_date="yesterday"),
    )
    error = assert_error(response, 422, "validation_error")
    assert {"email", "sex", "birth_date"} <= set(error["details"])
    assert "first_name" not in error["details"]


def test_missing_fields_are_422_naming_each_field(client):
    error = assert_error(client.post(TOKEN, json={}), 422, "validation_error")
    assert set(error["details"]) == {"email", "password"}


def test_birth_date_in_the_future_is_422(client):
    future = date.today().replace(year=date.today().year + 1).isoformat()
    error = assert_error(
        client.post(REGISTER, json=valid_registration(birth_date=future)), 422, "validation_error"
    )
    assert set(error["details"]) == {"birth_date"}


def test_unknown_extra_field_is_422(client):
    response = client.post(TOKEN, json={"email": "a@example.org", "password": "x", "role": "admin"})
    error = assert_error(response, 422, "validation_error")
    assert set(error["details"]) == {"role"}


def test_json_that_is_not_an_object_is_422(client):
    response = client.post(TOKEN, data="[1, 2]", content_type="application/json")
    assert_error(response, 422, "validation_error")


def test_failed_validation_changes_nothing(client, runtime):
    client.post(REGISTER, json=valid_registration(sex="robot"))
    response = client.post(
        TOKEN, json={"email": "hygiene@example.org", "password": PASSWORDS["member"]}
    )
    assert_error(response, 401, "invalid_credentials")


# -- headers -------------------------------------------------------------------------------


def _sample_responses(client, runtime):
    tokens = login(client, runtime, make_member(runtime))
    return {
        "healthz": client.get("/healthz"),
        "me": client.get("/api/v1/me", headers=bearer(tokens)),
        "anonymous me": client.get("/api/v1/me"),
        "404": client.get("/api/v1/nothing-here"),
        "404 outside api": client.get("/nothing-here"),
        "405": client.get(TOKEN),
        "422": client.post(TOKEN, json={}),
        "openapi": client.get("/api/v1/openapi.json"),
    }


def test_security_headers_on_every_response(client, runtime):
    for name, response in _sample_responses(client, runtime).items():
        headers = response.headers
        assert headers["Strict-Transport-Security"].startswith("max-age="), name
        assert int(headers["Strict-Transport-Security"].split("=")[1].split(";")[0]) >= 31536000
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp, name
        assert "unsafe-inline" not in csp, name
        assert "unsafe-eval" not in csp, name
        assert "default-src 'self'" in csp, name
        assert headers["X-Content-Type-Options"] == "nosniff", name
        assert headers["Referrer-Policy"] == "no-referrer", name


def test_each_security_header_is_sent_once_and_a_view_may_set_its_own(make_app):
    app = make_app()

    def own_policy():
        return "x", 200, {"content-security-policy": "default-src 'none'"}

    app.add_url_rule("/own-policy", view_func=own_policy)
    headers = app.test_client().get("/own-policy").headers

    assert headers.getlist("Content-Security-Policy") == ["default-src 'none'"]
    for name in ("Strict-Transport-Security", "X-Frame-Options", "Permissions-Policy"):
        assert len(headers.getlist(name)) == 1, name


def test_api_responses_are_never_cached(client, runtime):
    for name, response in _sample_responses(client, runtime).items():
        if name in {"healthz", "404 outside api"}:
            continue
        assert response.headers["Cache-Control"] == "no-store", name


def test_member_profile_response_is_not_cacheable(client, runtime):
    tokens = login(client, runtime, make_member(runtime))
    response = client.get("/api/v1/me", headers=bearer(tokens))
    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]


# -- OpenAPI -------------------------------------------------------------------------------


def test_openapi_document_describes_the_api(client):
    response = client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document = response.get_json()
    assert document["info"]["title"] == "medchat"
    paths = document["paths"]
    for path in (
        "/api/v1/auth/register",
        "/api/v1/auth/token",
        "/api/v1/auth/enroll",
        "/api/v1/admin/accounts",
        "/api/v1/admin/audit",
        "/api/v1/me",
    ):
        assert path in paths, path
    assert "post" in paths["/api/v1/auth/token"]
    schemas = document["components"]["schemas"]
    for name in ("Register", "TokenRequest", "TokenResponse", "StaffCreate"):
        assert name in schemas, name
    assert set(schemas["TokenRequest"]["required"]) == {"email", "password"}
    assert schemas["TokenRequest"].get("additionalProperties") is not True


# -- CORS ----------------------------------------------------------------------------------


def test_no_cors_header_by_default(client):
    for response in (
        client.get("/healthz", headers={"Origin": "https://evil.example"}),
        client.post(TOKEN, json={}, headers={"Origin": "https://evil.example"}),
        client.get("/api/v1/me", headers={"Origin": "https://app.example"}),
    ):
        assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_header_only_for_configured_origin(make_app):
    client = make_app(cors_origins=("https://app.example",)).test_client()

    allowed = client.post(TOKEN, json={}, headers={"Origin": "https://app.example"})
    other = client.post(TOKEN, json={}, headers={"Origin": "https://evil.example"})

    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Origin" in allowed.headers["Vary"]
    assert "Access-Control-Allow-Origin" not in other.headers


# -- health --------------------------------------------------------------------------------


def test_healthz_reports_the_process_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_200_when_the_database_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"


@pytest.fixture
def app_without_database(key_dir, tmp_path):
    """An app whose database cannot be opened (a SQLite file in a missing directory)."""
    app = create_app(
        {
            "bcrypt_rounds": 4,
            "scrypt_log2_n": 10,
            "database_url": f"sqlite:///{tmp_path}/missing-dir/medchat.sqlite3",
            "key_dir": key_dir,
        },
        clock=ManualClock(),
    )
    app.config["TESTING"] = True
    yield app
    app.extensions["medchat"].database.dispose()


def test_readyz_is_503_when_the_database_is_unreachable(app_without_database):
    client = app_without_database.test_client()

    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")

    assert_error(response, 503, "dependency_down")
    assert "Traceback" not in response.get_data(as_text=True)


def test_a_ciphertext_that_does_not_open_is_a_clear_integrity_error(app):
    from access_control.crypto import DecryptionFailed

    def altered():
        raise DecryptionFailed

    app.add_url_rule("/altered", view_func=altered)
    response = app.test_client().get("/altered")
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "key_integrity_failed"
    assert "Traceback" not in response.get_data(as_text=True)
