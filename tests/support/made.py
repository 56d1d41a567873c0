"""Count the objects of a class made while a test runs (its ``__init__`` wrapped)."""

from __future__ import annotations

from typing import Any

import pytest


def objects_made(monkeypatch: pytest.MonkeyPatch, cls: type) -> list[type]:
    """From now on, the type of every object of ``cls`` (or a subclass) made, in order."""
    made: list[type] = []
    original = cls.__init__

    def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        made.append(type(self))
        original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__init__", counted)
    return made
