"""The rate limiter looks at the views that declare limits and at no other
(``medchat.web.throttling``): no request reaches it before its view, and the views that
declare limits check them in their own wrapper (``tests/api/test_sign_in_limits.py`` shows
those limits holding)."""

from __future__ import annotations

from flask import request
from flask_limiter import Limiter

from medchat.web.throttling import throttles_of
from tests.support.accounts import make_member


def test_no_before_request_step_of_any_blueprint_is_the_limiters(app):
    (limiter,) = app.extensions["limiter"]
    hooks = [hook for hooks in app.before_request_funcs.values() for hook in hooks]
    assert hooks, "the app has before-request steps: the check below looks at them"
    assert [hook for hook in hooks if getattr(hook, "__self__", None) is limiter] == []


def test_a_request_reaches_the_limiter_only_through_a_view_that_declares_a_limit(
    app, client, runtime, monkeypatch
):
    """Counted at the limiter itself: a sign-in (limited) reaches it once; a health check and
    a request for the member's profile (neither limited) never."""
    seen: list[str | None] = []
    original = Limiter._check_request_limit

    def recording(self: Limiter, *args: object, **kwargs: object) -> None:
        seen.append(request.endpoint)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Limiter, "_check_request_limit", recording)
    assert throttles_of(app.view_functions["auth.token"])
    assert not throttles_of(app.view_functions["health.healthz"])
    member = make_member(runtime)

    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/me").status_code == 401
    signed_in = client.post(
        "/api/v1/auth/token", json={"email": member.email, "password": member.password}
    )

    assert signed_in.status_code == 200
    assert seen == ["auth.token"]
