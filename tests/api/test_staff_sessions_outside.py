"""A staff session answers only from the staff networks, on every route its token reaches.

The network rule was a rule of paths (``STAFF_PATH_PREFIXES``): a clinician's token taken
outside the networks still refreshed itself (a new pair), listed and revoked its sessions and
changed its password (204 for the right current password, 401 for a wrong one: a password
oracle the sign-in's rule exists to close). The rule is now the caller's too: every route of
the URL map that a signed-in caller uses, with each staff role's valid token, from an address
outside the networks, is 403 ``network_not_allowed`` and changes nothing; a member is not
refused for network reasons anywhere.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from access_control.roles import Role
from medchat.models import AuthToken
from medchat.web.guard import declared_permission
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.routes import sample_path

OUTSIDE = {"REMOTE_ADDR": "203.0.113.7"}


def _signed_in_calls(app):
    """Every (method, path) of the API whose view needs a signed-in caller."""
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        permission = declared_permission(app.view_functions[rule.endpoint])
        if permission is None or permission.name == "PUBLIC":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, sample_path(rule)


def _tokens(runtime) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(select(func.count()).select_from(AuthToken))


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.ADMIN, Role.COMPLIANCE])
def test_a_staff_token_from_outside_is_refused_on_every_route(app, client, runtime, role):
    headers = bearer(login(client, runtime, make_staff(runtime, role)))
    calls = list(_signed_in_calls(app))
    assert len(calls) > 60
    before = _tokens(runtime)
    wrong = []
    for method, path in calls:
        response = client.open(path, method=method, json={}, headers=headers, environ_base=OUTSIDE)
        body = response.get_json(silent=True) or {}
        if (response.status_code, body.get("error", {}).get("code")) != (
            403,
            "network_not_allowed",
        ):
            wrong.append((method, path, response.status_code))
    assert wrong == []
    assert _tokens(runtime) == before


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.ADMIN, Role.COMPLIANCE])
def test_a_staff_refresh_token_from_outside_is_refused_and_stays_unspent(client, runtime, role):
    tokens = login(client, runtime, make_staff(runtime, role))
    body = {"refresh_token": tokens["refresh_token"]}

    outside = client.post("/api/v1/auth/refresh", json=body, environ_base=OUTSIDE)

    assert outside.status_code == 403, outside.get_json()
    assert outside.get_json()["error"]["code"] == "network_not_allowed"
    inside = client.post("/api/v1/auth/refresh", json=body)
    assert inside.status_code == 200, inside.get_json()  # the refused attempt spent nothing


def test_a_staff_password_change_from_outside_tells_nothing_of_the_password(client, runtime):
    person = make_staff(runtime, Role.CLINICIAN)
    headers = bearer(login(client, runtime, person))
    answers = {
        current: client.post(
            "/api/v1/auth/password",
            json={"current_password": current, "new_password": "a brand new passphrase 1984!"},
            headers=headers,
            environ_base=OUTSIDE,
        ).status_code
        for current in (person.password, "not the password at all")
    }
    assert answers == {person.password: 403, "not the password at all": 403}


def test_a_members_token_is_not_refused_for_network_reasons(client, runtime):
    tokens = login(client, runtime, make_member(runtime))
    for path in ("/api/v1/me", "/api/v1/conversations", "/api/v1/auth/sessions"):
        response = client.get(path, headers=bearer(tokens), environ_base=OUTSIDE)
        assert response.status_code == 200, (path, response.get_json())
    refreshed = client.post(
        "/api/v1/auth/refresh",
        json={"refresh_token": tokens["refresh_token"]},
        environ_base=OUTSIDE,
    )
    assert refreshed.status_code == 200, refreshed.get_json()
