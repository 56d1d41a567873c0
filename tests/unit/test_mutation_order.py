"""The mutation job's test order (tools/mutation_order.py, tests/support/fast_first.py).

The order decides how long ``make mutation`` takes, never what it decides; what these tests
hold is that the records carry what they say from one run to the next: each mutant's known
killer goes first, a line stays while its test still kills its mutant, and one module's run
never touches another module's lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from tests.support import fast_first

ROOT = Path(__file__).resolve().parents[2]
LEDGER = "medchat.archive.ledger.x_verify"
CHEAP = "tests/unit/test_x.py::test_cheap"
SLOW = "tests/unit/test_x.py::test_slow"


@pytest.fixture
def order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """tools/mutation_order.py with its two checked-in files in ``tmp_path``."""
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import mutation_order

    monkeypatch.setattr(mutation_order, "KILL_ORDER", tmp_path / "kill-order.tsv")
    monkeypatch.setattr(mutation_order, "KILLERS", tmp_path / "mutant-killers.tsv")
    return mutation_order


@pytest.fixture
def record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run's record of test durations, as the first pass over the selection leaves it."""
    path = tmp_path / "run" / "test-durations.json"
    path.parent.mkdir()
    path.write_text(json.dumps({CHEAP: 0.1, SLOW: 2.0}))
    monkeypatch.setenv(fast_first.ENV, str(path))
    return path


def _item(nodeid: str) -> Any:
    return SimpleNamespace(nodeid=nodeid)


def _report(nodeid: str, when: str, outcome: str, duration: float) -> Any:
    return SimpleNamespace(
        nodeid=nodeid,
        when=when,
        duration=duration,
        passed=outcome == "passed",
        failed=outcome == "failed",
    )


def _run(mutant: str, monkeypatch: pytest.MonkeyPatch, *reports: tuple[Any, ...]) -> None:
    monkeypatch.setenv("MUTANT_UNDER_TEST", mutant)
    for report in reports:
        fast_first.measure(_report(*report))


def test_a_mutant_s_known_killer_runs_before_the_cheaper_tests(record, monkeypatch):
    monkeypatch.setenv("MUTANT_UNDER_TEST", f"{LEDGER}__mutmut_3")
    items = [_item(SLOW), _item(CHEAP)]
    fast_first.order_fastest_first(items)
    assert [item.nodeid for item in items] == [CHEAP, SLOW]

    fast_first.killers_file(record).write_text(f"{LEDGER}__mutmut_3\t{SLOW}\tseed\n")
    fast_first.order_fastest_first(items)
    assert [item.nodeid for item in items] == [SLOW, CHEAP]

    monkeypatch.setenv("MUTANT_UNDER_TEST", f"{LEDGER}__mutmut_4")  # a sibling: no line
    fast_first.order_fastest_first(items)
    assert [item.nodeid for item in items] == [CHEAP, SLOW]


def test_a_kill_is_noted_with_the_time_of_the_tests_before_it(record, monkeypatch):
    _run(
        f"{LEDGER}__mutmut_1",
        monkeypatch,
        (CHEAP, "setup", "passed", 0.25),  # the killer's own set-up is no time lost
        (CHEAP, "call", "failed", 0.5),
    )
    _run(
        f"{LEDGER}__mutmut_2",
        monkeypatch,
        (CHEAP, "setup", "passed", 0.1),
        (CHEAP, "call", "passed", 0.02),
        (CHEAP, "teardown", "passed", 0.005),
        (SLOW, "setup", "passed", 1.0),
        (SLOW, "call", "failed", 0.5),
    )
    assert fast_first.killers_file(record).read_text().splitlines() == [
        f"{LEDGER}__mutmut_1\t{CHEAP}\t0",
        f"{LEDGER}__mutmut_2\t{SLOW}\t125",
    ]
    assert fast_first.killers(record) == {
        f"{LEDGER}__mutmut_1": CHEAP,
        f"{LEDGER}__mutmut_2": SLOW,
    }


def test_a_run_keeps_the_killers_found_late_and_those_that_were_seeded(order, record):
    order.KILLERS.write_text(
        f"ledger\t{LEDGER}__mutmut_5\t{SLOW}\n"  # seeded, killed first this time: kept
        f"ledger\t{LEDGER}__mutmut_6\t{SLOW}\n"  # seeded, not run this time (equivalent now)
        f"tokens\tmedchat.identity.tokens.x_check__mutmut_1\t{CHEAP}\n"  # another module
    )
    kills = record.with_suffix(".kills")
    order.seed("ledger", kills)
    killers = fast_first.killers_file(record)
    assert killers.read_text().splitlines() == [
        f"{LEDGER}__mutmut_5\t{SLOW}\tseed",
        f"{LEDGER}__mutmut_6\t{SLOW}\tseed",
    ]
    with killers.open("a") as run:
        run.write(f"{LEDGER}__mutmut_5\t{SLOW}\t0\n")
        run.write(f"{LEDGER}__mutmut_7\t{CHEAP}\t0\n")  # first try, not seeded: no line
        run.write(f"{LEDGER}__mutmut_8\t{SLOW}\t99\n")  # after a few unit tests: no line
        run.write(f"{LEDGER}__mutmut_9\t{SLOW}\t100\n")  # after a tenth of a second
    order.keep("ledger", kills)
    assert order.KILLERS.read_text().splitlines() == [
        f"ledger\t{LEDGER}__mutmut_5\t{SLOW}",
        f"ledger\t{LEDGER}__mutmut_9\t{SLOW}",
        f"tokens\tmedchat.identity.tokens.x_check__mutmut_1\t{CHEAP}",
    ]
