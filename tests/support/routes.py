"""Requests made from the URL map itself, for tests that walk every route."""

from __future__ import annotations

import uuid
from typing import Any


def sample_path(rule: Any) -> str:
    """The rule's path with a made-up value for each of its arguments."""
    values: dict[str, Any] = {}
    for name in rule.arguments:
        converter = type(rule._converters[name]).__name__
        values[name] = {"UUIDConverter": uuid.uuid4(), "IntegerConverter": 1}.get(converter, "x")
    return str(rule.build(values)[1])
