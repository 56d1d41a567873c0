"""The authorization matrix, generated from ``app.url_map`` and the permission table.

Every route under ``/api/v1`` declares a permission (``@requires``); for every role and for an
anonymous caller, each method of each route is called with a random id and an empty JSON
body. Anonymous callers get 401 unless the route is public, a role without the permission gets
403 ``forbidden``, and a role with it never gets 401 or 403 (it may get 404, 409 or 422 from
the empty body or the unknown id). New routes join the matrix without touching this file.
"""

from __future__ import annotations

import uuid

import pytest
from flask import Flask, url_for

from access_control.permissions import Permission, has_permission
from access_control.roles import Role
from medchat.identity.tokens import TokenStore
from medchat.services.context import ServiceContext
from medchat.web import guard
from medchat.web.guard import check_routes_declare_permissions, declared_permission, requires
from tests.support.accounts import Person, make_member, make_staff

#: Every role there is: a new one joins the matrix by itself.
ROLES = tuple(Role)
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def api_routes(app: Flask) -> list[tuple[str, str, str, Permission]]:
    """(rule, endpoint, method, permission) for every callable route under /api/v1."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule.endswith("/openapi.json"):
            continue
        permission = declared_permission(app.view_functions[rule.endpoint])
        assert permission is not None, rule.rule
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((rule.rule, rule.endpoint, method, permission))
    return routes


def fresh_access_token(runtime: ServiceContext, person: Person) -> str:
    """A new sign-in for ``person`` (2FA passed where the account has it), as login issues.

    Each call gets its own token so that a route like logout cannot spoil the next call.
    """
    with runtime.database.transaction() as session:
        pair = TokenStore(session, runtime.clock.now()).issue_pair(
            person.id,
            runtime.token_lifetimes(person.role != Role.MEMBER),
            mfa_verified=person.totp_secret is not None,
        )
    return pair.access_token


def call(app: Flask, client, endpoint: str, method: str, token: str | None):
    (rule,) = app.url_map.iter_rules(endpoint)
    with app.test_request_context():
        path = url_for(endpoint, **{name: uuid.uuid4() for name in rule.arguments})
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {} if method in BODY_METHODS else None
    return client.open(path, method=method, json=body, headers=headers)


@pytest.fixture
def people(runtime) -> dict[Role, Person]:
    return {
        role: make_member(runtime) if role == Role.MEMBER else make_staff(runtime, role)
        for role in ROLES
    }


def test_every_api_route_is_in_the_matrix(app):
    routes = api_routes(app)
    assert len(routes) >= 13
    permissions = {permission for *_, permission in routes}
    assert Permission.PUBLIC in permissions
    assert Permission.ADMIN_ACCOUNTS in permissions


def test_anonymous_callers_get_401_unless_the_route_is_public(app, client):
    failures = []
    for rule, endpoint, method, permission in api_routes(app):
        response = call(app, client, endpoint, method, None)
        body = response.get_json(silent=True) or {}
        code = body.get("error", {}).get("code")
        if permission is Permission.PUBLIC:
            # An empty body is invalid everywhere public: validation answers, not auth.
            if response.status_code in (401, 403):
                failures.append(("public but refused", method, rule, response.status_code, body))
        elif response.status_code != 401 or code != "not_authenticated":
            failures.append(("not refused", method, rule, response.status_code, body))
    assert failures == []


@pytest.mark.parametrize("role", ROLES)
def test_roles_get_exactly_their_permissions(app, client, runtime, people, role):
    person = people[role]
    failures = []
    for rule, endpoint, method, permission in api_routes(app):
        response = call(app, client, endpoint, method, fresh_access_token(runtime, person))
        body = response.get_json(silent=True) or {}
        if has_permission(role, permission):
            # A domain refusal of its own (e.g. ``role_key_required``) is not the permission
            # table refusing the role.
            code = body.get("error", {}).get("code")
            if response.status_code == 401 or code in ("forbidden", "mfa_required"):
                failures.append(("allowed but refused", method, rule, response.status_code, body))
        elif response.status_code != 403 or body.get("error", {}).get("code") != "forbidden":
            failures.append(("forbidden but answered", method, rule, response.status_code, body))
    assert failures == []


def test_public_routes_are_few_and_known(app):
    public = {rule for rule, _, _, permission in api_routes(app) if permission is Permission.PUBLIC}
    assert public == {
        "/api/v1/auth/register",
        "/api/v1/auth/token",
        "/api/v1/auth/refresh",
        "/api/v1/auth/enroll",
        "/api/v1/auth/enroll/confirm",
        "/api/v1/auth/password-reset",
        "/api/v1/auth/password-reset/confirm",
        # The archive-signing public key: anyone verifies exported records offline with it.
        "/api/v1/archive/public-key",
        # The VAPID public key: a browser subscribes with it before anything else.
        "/api/v1/push/vapid-key",
        # The consent text a member agrees to: shown before registration too.
        "/api/v1/consent",
        # Service hours, response time and the emergency notice: shown before sign-in.
        "/api/v1/service",
        # Swagger UI for the OpenAPI document (public, as the document is): the page, its
        # start-up script and the listed assets of flask-swagger-ui.
        "/api/v1/docs",
        "/api/v1/docs/medchat-docs.js",
        "/api/v1/docs/<name>",
    }


def test_staff_surfaces_belong_to_one_role_each(app):
    for rule, _, _, permission in api_routes(app):
        if rule.startswith("/api/v1/admin/"):
            holders = {role for role in ROLES if has_permission(role, permission)}
            assert holders == {Role.ADMIN}, rule
        if rule.startswith("/api/v1/dpo/"):
            holders = {role for role in ROLES if has_permission(role, permission)}
            assert holders == {Role.DPO}, rule


def test_undeclared_api_route_is_refused_at_start():
    app = Flask(__name__)
    app.add_url_rule("/api/v1/forgotten", "forgotten", lambda: "open to all")

    with pytest.raises(RuntimeError, match="/api/v1/forgotten"):
        check_routes_declare_permissions(app)


def test_an_undeclared_route_after_the_openapi_document_is_refused_too():
    # The exemption of the OpenAPI document skips that one route, not the rest of the map.
    app = Flask(__name__)
    app.add_url_rule("/api/v1/openapi.json", "document", lambda: "{}")
    app.add_url_rule("/api/v1/forgotten", "forgotten", lambda: "open to all")

    with pytest.raises(RuntimeError, match="/api/v1/forgotten"):
        check_routes_declare_permissions(app)


def test_declared_routes_pass_the_start_check():
    app = Flask(__name__)
    app.add_url_rule(
        "/api/v1/declared", "declared", requires(Permission.MEMBER_PROFILE)(lambda: "ok")
    )
    app.add_url_rule("/outside", "outside", lambda: "not under /api")

    check_routes_declare_permissions(app)
    assert guard.declared_permission(app.view_functions["declared"]) is Permission.MEMBER_PROFILE


def test_the_member_data_rights_routes_belong_to_members_alone(app):
    """Export, rectification, access log and account deletion (docs/data-rights.md)."""
    rights = {
        ("/api/v1/me", "PATCH"),
        ("/api/v1/me/export", "GET"),
        ("/api/v1/me/access-log", "GET"),
        ("/api/v1/me/deletion", "POST"),
        ("/api/v1/me/restriction", "GET"),
        ("/api/v1/me/restriction", "POST"),
        ("/api/v1/me/restriction", "DELETE"),
        ("/api/v1/me/objection", "POST"),
    }
    declared = {
        (rule, method): permission
        for rule, _, method, permission in api_routes(app)
        if (rule, method) in rights
    }
    assert set(declared) == rights
    for route, permission in declared.items():
        holders = {role for role in ROLES if has_permission(role, permission)}
        assert holders == {Role.MEMBER}, route
