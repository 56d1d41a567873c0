"""Driving the console with Flask's test client: CSRF tokens come from the rendered forms."""

from __future__ import annotations

import re
from typing import Any

from tests.support.accounts import Person, code_for

_CSRF = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1) or match.group(2)


def post_form(
    client: Any, path: str, data: dict[str, Any], *, page: str | None = None, **kwargs: Any
):
    """POST a console form with the CSRF token of ``page`` (default: the same path)."""
    html = client.get(page or path).get_data(as_text=True)
    return client.post(path, data={"csrf_token": csrf_from(html), **data}, **kwargs)


def console_login(client: Any, runtime: Any, person: Person) -> None:
    response = post_form(
        client, "/console/login", {"email": person.email, "password": person.password}
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    runtime.clock.advance(seconds=30)
    response = post_form(client, "/console/totp", {"code": code_for(person, runtime)})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    assert response.headers["Location"].endswith("/console/queue")
