"""Hostile strings at every JSON field and every query parameter of every route: never a 5xx.

The class behind issue 12, item 12 (a TOTP code in Arabic digits, a lone surrogate, a NUL in a
first name, a cursor out of range: each was a 500). The targets are read from the code, never
typed here: every route under ``/api/v1`` from ``app.url_map``, its request body's fields and
its query parameters from the OpenAPI document the app serves (made from the very schemas
that validate), so a new route or field joins by itself. Each target gets the known hostile
strings and a few that hypothesis draws (control characters, lone surrogates, other digits);
the caller holds the route's permission, so each request reaches validation and the service.

Every answer is below 500 and, when it refuses, follows the error contract. Bounded: eight
generated strings per target, seeded per target (reproducible), no example database; about
ten seconds on SQLite for some 2,000 requests.
Not covered: multipart bodies (attachments: their one field is a file) and headers
(``Idempotency-Key`` has its own ASCII rule; a test client cannot send non-Latin-1 headers).
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from access_control.permissions import Permission, has_permission
from access_control.roles import Role
from medchat.web.guard import declared_permission
from tests.support.accounts import login, make_member, make_staff
from tests.support.messaging import care_team, give_consent

HOSTILE: list[Any] = [
    "\x00",
    "Ca\x00mille",
    "\ud800",
    "a\udfffb",
    "١٢٣٤٥٦",  # Arabic-Indic digits: str.isdigit() is true
    "".join(chr(0x1D7D9 + i) for i in range(6)),  # mathematical double-struck digits, likewise
    "\u202eevil",
    "\ufeff",
    "\x1b[31m",
    "' OR 1=1 --",
    "%00",
    "9" * 400,
    "x" * 20_000,
    "",
    " ",
    # not strings: the same fields given the wrong JSON type
    10**30,
    -1,
    None,
    [],
    {},
]
#: Control characters, lone surrogates, other digits, format characters, and anything else.
_ALPHABET = st.one_of(
    st.integers(0x00, 0x1F).map(chr),
    st.integers(0xD800, 0xDFFF).map(chr),
    st.characters(categories=["Nd"]),
    st.characters(categories=["Cf"]),
    st.characters(),
)
GENERATED = st.text(_ALPHABET, max_size=40)
GENERATED_PER_TARGET = 8
#: Every role there is: a new one joins by itself.
ROLES = tuple(Role)
_addresses = itertools.count(1)


@dataclass
class Target:
    """One place a client puts a value: a body field or a query parameter of one route."""

    rule: str
    method: str
    location: str  # "json" or "query"
    name: str
    permission: Permission
    #: The body's other required fields and their schemas (filled with plausible values).
    required: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.method} {self.rule} {self.location}:{self.name}"


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def plausible(name: str, schema: dict[str, Any]) -> Any:
    """A value the schema accepts, for the fields around the one under attack."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "boolean":
        return True
    if kind == "integer":
        return max(schema.get("minimum", 1), 1)
    fmt = schema.get("format")
    if fmt == "email":
        return f"probe-{uuid.uuid4().hex[:12]}@example.org"
    if fmt == "date":
        return "1990-01-01"
    if fmt == "uuid":
        return str(uuid.uuid4())
    if name == "phone":
        return "+33 6 12 34 56 78"
    return "quokka-harbor-lantern-42"


def targets(app: Flask, spec: dict[str, Any]) -> list[Target]:
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule.endswith("/openapi.json"):
            continue
        if rule.endpoint.startswith("docs."):  # the document's own pages (Swagger UI)
            continue
        permission = declared_permission(app.view_functions[rule.endpoint])
        assert permission is not None, rule.rule
        path = spec["paths"].get(openapi_path(rule.rule))
        assert path is not None, f"{rule.rule} is missing from the OpenAPI document"
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = path[method.lower()]
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    found.append(Target(rule.rule, method, "query", parameter["name"], permission))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None:
                continue
            schema = resolve(spec, body["schema"])
            properties = {k: resolve(spec, v) for k, v in schema["properties"].items()}
            required = {name: properties[name] for name in schema.get("required", [])}
            for name in properties:
                found.append(Target(rule.rule, method, "json", name, permission, required))
    return found


def caller_for(permission: Permission, people: dict[Role, str]) -> str | None:
    """An access token of a role holding ``permission`` (``None`` for a public route)."""
    if permission is Permission.PUBLIC:
        return None
    return next(people[role] for role in ROLES if has_permission(role, permission))


def throw(app: Flask, target: Target, value: Any, token: str | None):
    path = re.sub(r"<(?:[a-z]+:)?[a-z_]+>", lambda _: str(uuid.uuid4()), target.rule)
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    # A fresh loopback address each time: the per-address sign-in limits stay out of the way.
    n = next(_addresses)
    environ = {"REMOTE_ADDR": f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"}
    client = app.test_client()
    if target.location == "query":
        text = value if isinstance(value, str) else json.dumps(value)
        query = f"{target.name}={quote(text, safe='', errors='surrogatepass')}"
        return client.open(
            f"{path}?{query}", method=target.method, headers=headers, environ_base=environ
        )
    body = {name: plausible(name, schema) for name, schema in target.required.items()}
    body[target.name] = value
    # ensure_ascii: a lone surrogate travels as the "\ud800" escape a hostile client sends.
    data = json.dumps(body, ensure_ascii=True)
    return client.open(
        path,
        method=target.method,
        data=data,
        content_type="application/json",
        headers=headers,
        environ_base=environ,
    )


def check(response, target: Target, value: Any) -> None:
    assert response.status_code < 500, (str(target), repr(value)[:80], response.get_data()[:300])
    if response.status_code >= 400 and response.mimetype == "application/json":
        error = response.get_json()["error"]
        assert error["code"] and error["message"], (str(target), repr(value)[:80])


@pytest.fixture
def people(client, runtime) -> dict[Role, str]:
    """An access token per role, from a real sign-in: the care team holds the role keys and
    the member has consented, so requests reach the services, not a missing set-up (a 503
    ``keys_not_initialized`` would count as a 5xx here)."""
    team = care_team(runtime)
    member = make_member(runtime)
    tokens = {
        Role.MEMBER: login(client, runtime, member),
        Role.CLINICIAN: login(client, runtime, team.clinician),
        Role.COMPLIANCE: login(client, runtime, team.compliance),
        Role.ADMIN: login(client, runtime, make_staff(runtime, Role.ADMIN)),
        Role.DPO: login(client, runtime, make_staff(runtime, Role.DPO)),
    }
    give_consent(client, tokens[Role.MEMBER])
    return {role: pair["access_token"] for role, pair in tokens.items()}


@pytest.fixture
def every_target(app, client) -> list[Target]:
    spec = client.get("/api/v1/openapi.json").get_json()
    found = targets(app, spec)
    # The enumeration itself works: the fields of the findings are among the targets.
    names = {(t.rule, t.location, t.name) for t in found}
    assert ("/api/v1/auth/token", "json", "totp_code") in names
    assert ("/api/v1/me", "json", "first_name") in names
    assert ("/api/v1/admin/audit", "query", "cursor") in names
    return found


def test_known_hostile_values_at_every_field_of_every_route(app, people, every_target):
    for target in every_target:
        token = caller_for(target.permission, people)
        for value in HOSTILE:
            check(throw(app, target, value, token), target, value)


def generated_strings_never_5xx(app: Flask, target: Target, token: str | None):
    """A hypothesis test for one target, seeded by it: reproducible, and each target gets
    strings of its own."""

    @seed(zlib.crc32(str(target).encode()))
    @settings(
        max_examples=GENERATED_PER_TARGET,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(value=GENERATED)
    def never_a_5xx(value: str) -> None:
        check(throw(app, target, value, token), target, value)

    return never_a_5xx


def test_generated_strings_at_every_field_of_every_route(app, people, every_target):
    for target in every_target:
        generated_strings_never_5xx(app, target, caller_for(target.permission, people))()
