"""Which tests killed which function's mutants last time: the first mutants of a run use it.

``tests/support/fast_first.py`` orders a mutant's tests by their time per kill, a kill of the
same function's mutants counting ten times. Within one run that record starts empty, so the
first mutants of each function wait behind every cheaper test until one of them fails: in a
fresh checkout (CI) the whole job pays that. ``tests/mutation/kill-order.tsv`` keeps, per
module and mutated function, the tests that killed its mutants in the last run and how many
(the eight that killed most); ``seed`` writes a module's lines into its run's record before
the run, ``keep`` replaces them with the run's own kills after it.

``tests/mutation/mutant-killers.tsv`` keeps, per mutant, the test that killed it, for the
mutants that a function's order leaves behind tests that pass (they took a tenth of a second
or more before the killer ran, in the run that found it): that mutant runs its killer first
next time. A line stays while its test keeps killing its mutant; a mutant its function's order
kills at once needs none.

Both change the order of the tests only, never which tests run or what they decide: a stale
line (a test renamed, a function gone, mutmut numbering a changed function's mutants anew) is
a test that is not first, nothing more. Commit the files with the code they were measured on,
like a lock file.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

KILL_ORDER = Path(__file__).resolve().parent.parent / "tests" / "mutation" / "kill-order.tsv"
KILLERS = KILL_ORDER.with_name("mutant-killers.tsv")
#: The last field of a seeded line of a run's ``.killers`` (``tests/support/fast_first.py``).
SEEDED = "seed"
#: Milliseconds of tests before a kill worth a line (a unit test takes a few).
WORTH_A_LINE_MS = 100
#: The killers kept per function: enough for most of its mutants, few enough to stay small.
KEPT_PER_FUNCTION = 8
_writing = threading.Lock()  # two modules finish at once


def seed(module: str, kills: Path) -> None:
    """Write ``module``'s known killers into the run's record (``function\\ttest\\tcount``),
    and each known mutant's killer beside it (``mutant\\ttest\\tseed``)."""
    lines = [
        line.split("\t", 1)[1] for line in _lines(KILL_ORDER) if line.split("\t", 1)[0] == module
    ]
    kills.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    mutants = [
        line.split("\t", 1)[1] for line in _lines(KILLERS) if line.split("\t", 1)[0] == module
    ]
    kills.with_suffix(".killers").write_text(
        "".join(f"{line}\t{SEEDED}\n" for line in mutants), encoding="utf-8"
    )


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
        _replace(KILL_ORDER, module, fresh)
        _replace(KILLERS, module, _mutant_killers(module, kills.with_suffix(".killers")))


def _mutant_killers(module: str, killers: Path) -> list[str]:
    """The run's kills worth a line: the killer came after other tests that took
    ``WORTH_A_LINE_MS`` or more, or it was seeded."""
    seeded: set[str] = set()
    kept: dict[str, str] = {}
    try:
        text = killers.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 3:
            continue
        mutant, test, before = fields
        if before == SEEDED:
            seeded.add(mutant)
        elif mutant in seeded or int(before) >= WORTH_A_LINE_MS:
            kept[mutant] = test
    return [f"{module}\t{mutant}\t{test}" for mutant, test in kept.items()]


def _replace(path: Path, module: str, fresh: list[str]) -> None:
    others = [line for line in _lines(path) if line.split("\t", 1)[0] != module]
    path.write_text("".join(f"{line}\n" for line in sorted(others + fresh)), "utf-8")


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    except FileNotFoundError:
        return []
