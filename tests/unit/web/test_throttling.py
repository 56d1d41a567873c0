"""The rate limiter looks at the views that declare limits and at no other
(``medchat.web.throttling``): every view of the URL map, its own declarations against what the
limiter's request filter decides for a request routed to it."""

from __future__ import annotations

import uuid

from medchat.web.throttling import throttles_of

SAMPLES = {"int": 7, "uuid": uuid.UUID("5b0e7e0c-58f4-4a8e-9f8e-2f1d3c4b5a69")}


def _path(app, rule) -> str:
    values = {
        name: SAMPLES.get(type(converter).__name__.removesuffix("Converter").lower(), "x")
        for name, converter in rule._converters.items()
    }
    return app.url_map.bind("localhost").build(rule.endpoint, values)


def test_the_limiter_skips_exactly_the_views_that_declare_no_limit(app):
    (limiter,) = app.extensions["limiter"]
    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"]
    declared = {r.endpoint for r in rules if throttles_of(app.view_functions[r.endpoint])}
    assert {"auth.token", "console.login"} <= declared

    for rule in rules:
        method = sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
        with app.test_request_context(_path(app, rule), method=method) as context:
            assert context.request.endpoint == rule.endpoint
            skipped = any(check() for check in limiter._request_filters)
        assert skipped == (rule.endpoint not in declared), rule.endpoint
