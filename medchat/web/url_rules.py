"""URL rules whose URL builders are compiled when first used.

werkzeug compiles two Python functions per rule as the rule is added (the URL builders
``url_for`` calls: one that appends unknown arguments as a query string, one that does not).
For the app's ~120 rules that is most of what ``create_app`` costs, paid by every worker at
start and by every test that builds an app, while a process builds URLs for a handful of
endpoints. Matching does not use them. ``LazyBuilderRule`` compiles each builder on its first
call with werkzeug's own code, so every URL is the one werkzeug would build
(``tests/unit/web/test_url_rules.py`` compares them rule by rule).

Set as ``Flask.url_rule_class`` (Flask's documented hook for the rule type).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.routing import Rule


class LazyBuilderRule(Rule):
    """A werkzeug ``Rule`` whose builders are compiled on first use, then kept."""

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        slot = "_build_unknown" if append_unknown else "_build"

        def build_then_keep(rule: Rule, **values: Any) -> tuple[str, str]:
            # Two threads may both compile the first time: the same function, either kept.
            compiled = Rule._compile_builder(rule, append_unknown).__get__(rule, None)
            setattr(rule, slot, compiled)
            return compiled(**values)  # type: ignore[no-any-return]

        return build_then_keep
