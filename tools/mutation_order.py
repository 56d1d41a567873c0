"""Which tests killed which function's mutants last time: the first mutants of a run use it.

``tests/support/fast_first.py`` orders a mutant's tests by their time per kill, a kill of the
same function's mutants counting ten times. Within one run that record starts empty, so the
first mutants of each function wait behind every cheaper test until one of them fails: in a
fresh checkout (CI) the whole job pays that. ``tests/mutation/kill-order.tsv`` keeps, per
module and mutated function, the tests that killed its mutants in the last run and how many
(the eight that killed most); ``seed`` writes a module's lines into its run's record before
the run, ``keep`` replaces them with the run's own kills after it.

It changes the order of the tests only, never which tests run or what they decide: a stale
line (a test renamed, a function gone) is a test that is not first, nothing more. Commit the
file with the code it was measured on, like a lock file.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

KILL_ORDER = Path(__file__).resolve().parent.parent / "tests" / "mutation" / "kill-order.tsv"
#: The killers kept per function: enough for most of its mutants, few enough to stay small.
KEPT_PER_FUNCTION = 8
_writing = threading.Lock()  # two modules finish at once


def seed(module: str, kills: Path) -> None:
    """Write ``module``'s known killers into the run's record (``function\\ttest\\tcount``)."""
    lines = [line.split("\t", 1)[1] for line in _lines() if line.split("\t", 1)[0] == module]
    kills.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def keep(module: str, kills: Path) -> None:
    """Replace ``module``'s lines with this run's kills (the record's two-field lines)."""
    counted: Counter[tuple[str, str]] = Counter()
    try:
        text = kills.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) == 2 and fields[0]:
            counted[(fields[0], fields[1])] += 1
    best: dict[str, list[tuple[int, str]]] = {}
    for (function, test), count in counted.items():
        best.setdefault(function, []).append((count, test))
    fresh = [
        f"{module}\t{function}\t{test}\t{count}"
        for function, ranked in best.items()
        for count, test in sorted(ranked, key=lambda each: (-each[0], each[1]))[:KEPT_PER_FUNCTION]
    ]
    with _writing:
        others = [line for line in _lines() if line.split("\t", 1)[0] != module]
        KILL_ORDER.write_text("".join(f"{line}\n" for line in sorted(others + fresh)), "utf-8")


def _lines() -> list[str]:
    try:
        return [line for line in KILL_ORDER.read_text(encoding="utf-8").splitlines() if line]
    except FileNotFoundError:
        return []
