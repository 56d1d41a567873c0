"""Fastest tests first, for the mutants' runs of ``tools/mutation.py``.

mutmut runs, for each mutant, the tests that reached the mutated function, with ``-x``: the
run ends at the first test that fails. Most mutants are killed, so the order decides a run's
cost; a cheap unit test that kills a mutant should not wait behind a slow API scenario.
``MEDCHAT_TEST_FAST_FIRST`` names mutmut's record of each test's duration (from its first
pass over the selection; absent during that pass); the tests are sorted by it, within each
database (so a run still sets each database up once, SQLite first).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ENV = "MEDCHAT_TEST_FAST_FIRST"
_BACKEND_RANK = {"sqlite": 1, "postgresql": 2}


def _backend_rank(item: pytest.Item) -> int:
    callspec = getattr(item, "callspec", None)
    backend = callspec.params.get("database_url") if callspec is not None else None
    return _BACKEND_RANK.get(backend, 0) if isinstance(backend, str) else 0


def order_fastest_first(items: list[pytest.Item]) -> None:
    """Sort ``items`` in place by the recorded durations, if there is a record."""
    record = os.environ.get(ENV)
    if not record or not Path(record).is_file():
        return
    durations: dict[str, float] = json.loads(Path(record).read_text())["duration_by_test"]
    slowest = max(durations.values(), default=0.0)
    items.sort(key=lambda item: (_backend_rank(item), durations.get(item.nodeid, slowest)))
