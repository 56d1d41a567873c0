"""What the served OpenAPI document promises, checked against what the service does (the
fast half of the contract test; ``test_schemathesis`` is the generated half)."""

from __future__ import annotations

import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from access_control.permissions import Permission
from medchat.errors import ValidationFailed
from medchat.schemas.cursors import (
    ACTIVITY_CURSOR_PATTERN,
    SEQ_CURSOR_PATTERN,
    decode_activity_cursor,
    decode_seq_cursor,
    encode_activity_cursor,
    encode_cursor,
)
from medchat.web.guard import declared_permission
from medchat.web.security_headers import CONTENT_SECURITY_POLICY
from tests.support.accounts import bearer, login, make_member
from tests.support.messaging import care_team

OPENAPI = "/api/v1/openapi.json"
ERROR = {"$ref": "#/components/schemas/Error"}


def _operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method, operation


def _view(app, path, method):
    rule = path.replace("{", "<uuid:").replace("}", ">")
    adapter = app.url_map.bind("localhost")
    concrete = re.sub(r"<uuid:[^>]+>", "00000000-0000-0000-0000-000000000001", rule)
    endpoint, _ = adapter.match(concrete, method=method.upper())
    return app.view_functions[endpoint]


def test_guarded_operations_require_the_bearer_token_and_public_ones_do_not(app, client):
    document = client.get(OPENAPI).get_json()
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The `access_token` of `POST /api/v1/auth/token`.",
    }
    for path, method, operation in _operations(document):
        public = declared_permission(_view(app, path, method)) is Permission.PUBLIC
        expected = None if public else [{"bearerAuth": []}]
        assert operation.get("security") == expected, (method, path)
        if not public:
            assert "401" in operation["responses"] and "403" in operation["responses"]


def test_every_error_response_is_the_error_body_and_there_is_no_catch_all(client):
    document = client.get(OPENAPI).get_json()
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        assert "default" not in responses, (method, path)
        assert "503" in responses, (method, path)
        for status, response in responses.items():
            if int(status) >= 400:
                assert response["content"] == {"application/json": {"schema": ERROR}}
        assert (
            "WWW-Authenticate"
            in responses.get("401", {"headers": {"WWW-Authenticate": 1}})["headers"]
        )
        for status in ("429", "503"):
            if status in responses:
                assert "Retry-After" in responses[status]["headers"], (method, path, status)
    error = document["components"]["schemas"]["ErrorBody"]
    assert set(error["properties"]) == {"code", "message", "details"}


def test_the_fhir_export_and_downloads_are_documented_with_their_media_types(client):
    paths = client.get(OPENAPI).get_json()["paths"]
    export = paths["/api/v1/me/export"]["get"]["responses"]["200"]["content"]
    assert set(export) == {"application/json", "application/fhir+json"}
    download = paths["/api/v1/attachments/{attachment_id}"]["get"]["responses"]["200"]
    assert "application/pdf" in download["content"]
    bundle = paths["/api/v1/compliance/retrievals/{retrieval_id}/export"]["get"]["responses"]
    assert bundle["200"]["content"]["application/json"]["schema"]["required"]


def test_the_fhir_export_is_served_as_fhir_json(client, runtime):
    tokens = login(client, runtime, make_member(runtime))
    response = client.get("/api/v1/me/export?format=fhir", headers=bearer(tokens))
    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"


def test_cursor_parameters_carry_the_pattern_the_decoders_check(client):
    paths = client.get(OPENAPI).get_json()["paths"]

    def cursor_pattern(path, method="get"):
        parameters = paths[path][method]["parameters"]
        (cursor,) = [p for p in parameters if p["name"] == "cursor"]
        assert cursor["schema"]["type"] == "string"  # a query string is never null
        return cursor["schema"]["pattern"]

    assert cursor_pattern("/api/v1/conversations") == ACTIVITY_CURSOR_PATTERN
    assert cursor_pattern("/api/v1/clinician/queue") == ACTIVITY_CURSOR_PATTERN
    assert cursor_pattern("/api/v1/me/access-log") == SEQ_CURSOR_PATTERN
    assert cursor_pattern("/api/v1/conversations/{conversation_id}/messages") == (
        SEQ_CURSOR_PATTERN
    )


@pytest.mark.parametrize(
    "text",
    ["0", "123", "9" * 18, "9" * 19, "-1", "1.5", "12\n", " 12", "", "MTI", "\uff11\uff12"],
)
def test_a_sequence_cursor_is_accepted_exactly_when_it_matches_its_pattern(text):
    matches = re.search(SEQ_CURSOR_PATTERN, text) is not None and not text.endswith("\n")
    try:
        decode_seq_cursor(text)
        accepted = True
    except ValidationFailed:
        accepted = False
    assert accepted == matches


def test_cursors_round_trip_and_match_their_patterns():
    at = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    row = uuid.uuid4()
    activity = encode_activity_cursor((at, row))
    assert re.fullmatch(ACTIVITY_CURSOR_PATTERN[1:-1], activity)
    assert decode_activity_cursor(activity) == (at, row)
    assert decode_seq_cursor(encode_cursor(42)) == 42
    for garbage in (activity.upper(), activity + "\n", activity.replace(".", "-")):
        with pytest.raises(ValidationFailed):
            decode_activity_cursor(garbage)


def test_a_401_names_the_bearer_scheme(client, runtime):
    anonymous = client.get("/api/v1/me")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="medchat"'
    refused = client.get("/api/v1/me", headers={"Authorization": "Bearer not-a-token"})
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="medchat", error="invalid_token"'
    wrong = client.post("/api/v1/auth/token", json={"email": "x@example.org", "password": "x"})
    assert wrong.status_code == 401 and "WWW-Authenticate" in wrong.headers


def test_a_throttled_view_answers_401_to_a_caller_without_a_token_even_when_limited(
    client, runtime
):
    tokens = login(client, runtime, make_member(runtime))
    body = {"password": "wrong-password-guess"}
    answers = [
        client.post("/api/v1/auth/mfa/enroll", json=body, headers=bearer(tokens)).status_code
        for _ in range(35)
    ]
    assert answers[-1] == 429  # the address's budget is spent (30 a minute)
    anonymous = client.post("/api/v1/auth/mfa/enroll", json=body)
    assert anonymous.status_code == 401
    assert "WWW-Authenticate" in anonymous.headers


def test_an_automatic_options_with_a_dead_token_is_no_server_error(client, runtime):
    team = care_team(runtime)
    tokens = login(client, runtime, team.clinician)
    assert client.post("/api/v1/auth/logout", headers=bearer(tokens)).status_code == 204
    # The drain after clinician requests loaded the principal after the view: for a request
    # no view checked (an automatic OPTIONS), a dead token raised outside every handler.
    response = client.options("/api/v1/clinician/queue", headers=bearer(tokens))
    assert response.status_code == 200
    assert "GET" in response.headers["Allow"]


def test_the_docs_page_is_served_from_here_under_the_csp(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    html = page.get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/api/v1/docs/") for s in sources)
    assert "<script>" not in html and "style=" not in html  # nothing inline
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200, source
    start = client.get("/api/v1/docs/medchat-docs.js").get_data(as_text=True)
    assert '"/api/v1/openapi.json"' in start
    assert client.get("/api/v1/docs/swagger-ui.js").status_code == 404  # not a listed asset
    assert client.get("/api/v1/docs/LICENSE").status_code == 404


def _documented_path(rule):
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)


def test_every_route_of_an_api_blueprint_is_in_the_document(app, client):
    """The document is written when first read (``MedchatApi.spec``): every blueprint
    registered with the Api is in it, each of its routes and methods."""
    document = client.get(OPENAPI).get_json()
    api_blueprints = app.extensions["flask-smorest"]["blp_name_to_api"]
    assert len(api_blueprints) >= 10
    routes = [r for r in app.url_map.iter_rules() if r.endpoint.split(".")[0] in api_blueprints]
    assert len(routes) > 50
    for rule in routes:
        item = document["paths"].get(_documented_path(rule))
        assert item is not None, rule.rule
        assert set(rule.methods) - {"HEAD", "OPTIONS"} <= {m.upper() for m in item}, rule
    assert {tag["name"] for tag in document["tags"]} == set(api_blueprints)


def test_readers_at_once_of_a_document_not_yet_written_each_read_it_whole(make_app):
    written = make_app().test_client().get(OPENAPI).get_json()
    fresh = make_app()
    start = threading.Barrier(6)

    def read(_: int) -> dict:
        client = fresh.test_client()
        start.wait()
        return client.get(OPENAPI).get_json()  # type: ignore[no-any-return]

    with ThreadPoolExecutor(6) as pool:
        documents = list(pool.map(read, range(6)))
    assert all(document == written for document in documents)
