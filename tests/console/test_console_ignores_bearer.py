"""The console knows only its own session: an ``Authorization`` header opens nothing there.

Two findings of one class: an API token (a member's too) opened console pages, skipping the
console's cookie session with its idle and absolute limits; and a malformed one made the
console's error page fail again while rendering (gunicorn's HTML 500). Every console route of
the URL map, each method it takes, with each kind of header: never a 5xx, never a page.
"""

from __future__ import annotations

import pytest

from access_control.roles import Role
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.routes import sample_path


@pytest.fixture
def app(make_app):
    """Errors handled as in production (not raised into the test)."""
    app = make_app()
    app.config.update(TESTING=False, PROPAGATE_EXCEPTIONS=False)
    return app


def _console_calls(app):
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/console"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, sample_path(rule)


def test_no_authorization_header_opens_or_breaks_a_console_page(app, client, runtime):
    member = login(client, runtime, make_member(runtime))
    clinician = login(client, runtime, make_staff(runtime, Role.CLINICIAN))
    headers = {
        "member's API token": bearer(member),
        "clinician's API token": bearer(clinician),
        "malformed": {"Authorization": "Bearer x"},
        "empty bearer": {"Authorization": "Bearer"},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
    }
    calls = list(_console_calls(app))
    assert len(calls) > 20  # the console's routes were found
    anonymous = {(m, p): client.open(p, method=m).status_code for m, p in calls}
    assert 200 in anonymous.values() and 302 in anonymous.values()  # public pages, and not
    wrong = []
    for name, header in headers.items():
        for method, path in calls:
            response = client.open(path, method=method, headers=header)
            # As if no header came: the login page, a redirect to it, a refusal (CSRF, a
            # method not allowed), never a page a session opens, never a 5xx.
            if response.status_code >= 500 or response.status_code != anonymous[method, path]:
                wrong.append((name, method, path, response.status_code))
    assert wrong == []
