"""The rate limiter looks at the views that declare limits and at no other
(``medchat.web.throttling``): every view of the URL map, its own declarations against what the
limiter's request filter decides for a request routed to it."""

from __future__ import annotations

from medchat.web.throttling import throttles_of
from tests.support.routes import sample_path


def test_the_limiter_skips_exactly_the_views_that_declare_no_limit(app):
    (limiter,) = app.extensions["limiter"]
    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"]
    declared = {r.endpoint for r in rules if throttles_of(app.view_functions[r.endpoint])}
    assert {"auth.token", "console.login"} <= declared

    for rule in rules:
        method = sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
        with app.test_request_context(sample_path(rule), method=method) as context:
            assert context.request.endpoint == rule.endpoint
            skipped = any(check() for check in limiter._request_filters)
        assert skipped == (rule.endpoint not in declared), rule.endpoint
