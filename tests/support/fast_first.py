"""Fastest tests first, for the mutants' runs of ``tools/mutation.py``.

mutmut runs, for each mutant, the tests that reached the mutated function, with ``-x``: the
run ends at the first test that fails. Most mutants are killed, so the order decides a run's
cost; a cheap unit test that kills a mutant should not wait behind a slow API scenario.

``MEDCHAT_TEST_FAST_FIRST`` names a file of each test's whole duration (set-up, call and
tear-down: mutmut's own record has the call only, and many tests here spend most of their
time setting up, sealing conversations or signing in). The first run of a module (mutmut's
pass over the selection) finds no file and writes it at its end. Every later run notes the
test that failed (it killed that mutant) beside it, with the mutated function, and sorts its
tests by their time per mutant killed so far, kills of the same function's mutants counting
ten times: a function's mutants tend to fall to the same few tests (the ledger's walk is
reached by every test of it, and killed by a handful), and a test that kills often and costs
little goes first. Within each database: see ``order_fastest_first``. The record starts with
the last run's killers of each function (``tools/mutation_order.py``), so a function's first
mutants do not pay for finding them again.

A function's order still leaves some mutants behind tests that pass: a mutant of the ledger's
walk falls to one test of the dozen that reach it, and not always the one that kills most of
its siblings (in one run, a sixth of the mutants took more than twice the median, and their
excess was two fifths of the job's time). So each kill is also noted per mutant with the time
the tests before it took (``.killers``), and a mutant whose killer is known runs it first.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import pytest

ENV = "MEDCHAT_TEST_FAST_FIRST"
_BACKEND_RANK = {"sqlite": 1, "postgresql": 2}
_LEAD = 5
#: A kill of a mutant of the same function counts this many kills elsewhere.
_SAME_FUNCTION = 10
_measured: defaultdict[str, float] = defaultdict(float)
#: Seconds each mutant's run spent so far, in all and per test (a forked child has its own).
_spent: defaultdict[str, float] = defaultdict(float)
_spent_on: defaultdict[tuple[str, str], float] = defaultdict(float)


def _record() -> Path | None:
    value = os.environ.get(ENV)
    return Path(value) if value else None


def _backend_rank(item: pytest.Item) -> int:
    callspec = getattr(item, "callspec", None)
    backend = callspec.params.get("database_url") if callspec is not None else None
    return _BACKEND_RANK.get(backend, 0) if isinstance(backend, str) else 0


def order_fastest_first(items: list[pytest.Item]) -> None:
    """Sort ``items`` in place by time per kill, if there is a record.

    Tests without a database first; then the ``_LEAD`` fastest of each database, then the rest
    of each. A mutant of a path one database takes alone (PostgreSQL's statements under the
    audit head lock) is killed by that database's tests: they should not wait behind every
    test of the other. Each database is set up at most twice. Before all of them, the test
    that killed this very mutant in the last run or earlier in this one, if it is selected.
    """
    record = _record()
    if record is None or not record.is_file():
        return
    durations: dict[str, float] = json.loads(record.read_text())
    slowest = max(durations.values(), default=0.0)
    kills = _kills(record)
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    function = _function(mutant)

    def cost(item: pytest.Item) -> tuple[int, float]:
        # A test's time per mutant it killed so far (one more, so a new test still counts).
        killed = kills[("", item.nodeid)] + _SAME_FUNCTION * kills[(function, item.nodeid)]
        return (_backend_rank(item), durations.get(item.nodeid, slowest) / (1 + killed))

    ranked = sorted(items, key=cost)
    killer = killers(record).get(mutant)
    first = [item for item in ranked if item.nodeid == killer][:1]
    items[:] = first + _by_database([item for item in ranked if item not in first])


def _by_database(ranked: list[pytest.Item]) -> list[pytest.Item]:
    groups: dict[int, list[pytest.Item]] = defaultdict(list)
    for item in ranked:
        groups[_backend_rank(item)].append(item)
    lead = groups.pop(0, [])
    lead += [item for rank in sorted(groups) for item in groups[rank][:_LEAD]]
    rest = [item for rank in sorted(groups) for item in groups[rank][_LEAD:]]
    return lead + rest


def measure(report: pytest.TestReport) -> None:
    """Add one phase's duration to its test's while there is no record yet (the first run);
    after it, note each test that fails in a mutant's run: it killed that mutant."""
    record = _record()
    if record is None:
        return
    if not record.is_file():
        _measured[report.nodeid] += report.duration
    elif "__mutmut_" in (mutant := os.environ.get("MUTANT_UNDER_TEST", "")):
        _spent[mutant] += report.duration
        _spent_on[(mutant, report.nodeid)] += report.duration
        if report.failed:
            # Short lines per kill, appended: the two workers' writes never interleave.
            with _kills_file(record).open("a", encoding="utf-8") as kills:
                kills.write(f"{_function(mutant)}\t{report.nodeid}\n")
            # With the milliseconds the tests that ran before the killer took.
            before = _spent[mutant] - _spent_on[(mutant, report.nodeid)]
            with killers_file(record).open("a", encoding="utf-8") as known:
                known.write(f"{mutant}\t{report.nodeid}\t{round(before * 1000)}\n")


def _kills_file(record: Path) -> Path:
    return record.with_suffix(".kills")


def killers_file(record: Path) -> Path:
    """``mutant\\ttest\\tMS``: the test that killed the mutant after other tests ran for MS
    milliseconds (this run), or ``mutant\\ttest\\tseed`` (the last run's, written first)."""
    return record.with_suffix(".killers")


def killers(record: Path) -> dict[str, str]:
    """Each mutant's known killer, this run's over the last run's."""
    try:
        lines = killers_file(record).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    return dict(line.split("\t")[:2] for line in lines if line.count("\t") == 2)


def _function(mutant: str) -> str:
    """The mutated function of a mutant's name (``module.x_name__mutmut_7``)."""
    return mutant.partition("__mutmut_")[0]


def _kills(record: Path) -> Counter[tuple[str, str]]:
    """Kills per test (under ``""``) and per (function, test), the last run's included."""
    try:
        lines = _kills_file(record).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return Counter()
    kills: Counter[tuple[str, str]] = Counter()
    for line in lines:
        # "function\ttest" per kill of this run, or "function\ttest\tcount" from the last
        # run's (tools/mutation_order.py writes those first).
        function, nodeid, *count = line.split("\t")
        times = int(count[0]) if count else 1
        kills[("", nodeid)] += times
        if function:
            kills[(function, nodeid)] += times
    return kills


def write_record() -> None:
    """At the end of the first run: the record the later runs sort by (whole or absent)."""
    record = _record()
    if record is None or record.is_file() or not _measured:
        return
    partial = record.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps(_measured))
    os.replace(partial, record)
