"""The app's rules build every URL werkzeug's own rules would (``medchat.web.url_rules``):
each rule of the URL map, with and without an unknown argument, against a plain ``Rule`` of
the same pattern in a plain ``Map``."""

from __future__ import annotations

import uuid

from werkzeug.routing import Map, Rule

from medchat.web.url_rules import LazyBuilderRule

SAMPLES = {"int": 7, "uuid": uuid.UUID("5b0e7e0c-58f4-4a8e-9f8e-2f1d3c4b5a69")}


def _values(rule: Rule) -> dict[str, object]:
    converters = rule._converters
    return {
        name: SAMPLES.get(type(converter).__name__.removesuffix("Converter").lower(), "a b/é")
        for name, converter in converters.items()
    }


def test_every_rule_of_the_app_is_lazy_and_builds_what_werkzeug_builds(app):
    # Flask adds its static rule as the app is made, before ``url_rule_class`` is set.
    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"]
    assert len(rules) > 50 and all(type(rule) is LazyBuilderRule for rule in rules)
    plain_map = Map(
        [Rule(rule.rule, endpoint=rule.endpoint, defaults=rule.defaults) for rule in rules]
    )
    plain = {rule.endpoint: rule for rule in plain_map.iter_rules()}
    for rule in rules:
        values = _values(rule)
        for extra in ({}, {"page": "2", "q": "x&y"}):
            for append_unknown in (True, False):
                expected = plain[rule.endpoint].build({**values, **extra}, append_unknown)
                # Twice: the first call compiles and keeps the builder, the second uses it.
                assert rule.build({**values, **extra}, append_unknown) == expected, rule
                assert rule.build({**values, **extra}, append_unknown) == expected, rule


def test_a_builder_is_compiled_once_and_kept():
    rule = LazyBuilderRule("/conversations/<uuid:conversation_id>", endpoint="e")
    Map([rule])
    first = rule._build_unknown
    assert rule.build({"conversation_id": SAMPLES["uuid"], "x": "1"}) == (
        "",
        f"/conversations/{SAMPLES['uuid']}?x=1",
    )
    kept = rule._build_unknown
    assert kept is not first and kept.__func__.__name__ != "build_then_keep"
    assert rule.build({"conversation_id": SAMPLES["uuid"]}, append_unknown=False) == (
        "",
        f"/conversations/{SAMPLES['uuid']}",
    )
    assert rule._build_unknown is kept
