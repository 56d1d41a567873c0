"""Every test a mutation module names exists, and its kill records name tests it runs.

A test module split or renamed moves tests out from under ``[tool.medchat-mutation.modules]``
in pyproject.toml: a path that no longer exists fails the job only after its first module has
run, and a test moved to a module the selection does not list stops killing mutants without a
word (the score may still pass on the others). The kill records (``tests/mutation/*.tsv``)
name the tests that killed each module's mutants last time, so each of those must still be a
test function in a file of that module's selection. Every module and every record line is
read, so a new one joins by itself.
"""

from __future__ import annotations

import ast
import tomllib
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def selections() -> dict[str, list[str]]:
    """Each mutation module's pytest arguments, as ``tools/mutation.py`` reads them."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    modules = table["tool"]["medchat-mutation"]["modules"]
    return {name: list(entry["tests"]) for name, entry in modules.items()}


def selected_files(tests: list[str]) -> list[str]:
    """The paths among a selection's pytest arguments (a ``-k`` expression is not one)."""
    paths, skip = [], False
    for argument in tests:
        if skip or argument.startswith("-"):
            skip = argument in ("-k", "-m")
            continue
        paths.append(argument)
    return paths


@cache
def functions_in(path: str) -> frozenset[str]:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    return frozenset(
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    )


def missing(tests: list[str]) -> list[str]:
    """Selection entries that name no file, or a test its file does not define."""
    problems = []
    for entry in selected_files(tests):
        path, _, name = entry.partition("::")
        if not (ROOT / path).is_file():
            problems.append(f"{entry}: no such file")
        elif name and name.split("[")[0] not in functions_in(path):
            problems.append(f"{entry}: no such test")
    return problems


def stray_records(module: str, tests: list[str], lines: list[str]) -> list[str]:
    """Record lines of ``module`` whose test is not a test function of its selection."""
    files = {entry.partition("::")[0] for entry in selected_files(tests)}
    problems = []
    for line in lines:
        fields = line.split("\t")
        if fields[0] != module:
            continue
        test = next(f for f in fields[1:] if "::" in f)
        path, _, name = test.partition("::")
        if path not in files or name.split("[")[0] not in functions_in(path):
            problems.append(f"{module}: {test}")
    return problems


def _record_lines() -> list[str]:
    return [
        line
        for name in ("kill-order.tsv", "mutant-killers.tsv")
        for line in (ROOT / "tests" / "mutation" / name).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def test_every_selected_test_exists():
    problems = [
        f"{name}: {problem}" for name, tests in selections().items() for problem in missing(tests)
    ]
    assert problems == []


def test_every_kill_record_names_a_test_of_its_module():
    lines = _record_lines()
    assert lines
    problems = [
        problem
        for name, tests in selections().items()
        for problem in stray_records(name, tests, lines)
    ]
    assert problems == []


def test_the_selection_checks_can_fail():
    here = "tests/unit/test_mutation_selections.py"
    tests = [here, "-k", "not tests/gone.py", "tests/gone.py", f"{here}::test_gone"]
    assert missing(tests) == [
        "tests/gone.py: no such file",
        f"{here}::test_gone: no such test",
    ]
    lines = [
        f"m\tf\t{here}::test_every_selected_test_exists\t3",
        f"m\tf\t{here}::test_gone\t1",
        "m\tmutant\ttests/unit/test_test_modules.py::test_no_test_module_imports_another",
        f"other\tf\t{here}::test_gone\t1",
    ]
    assert stray_records("m", [here], lines) == [
        f"m: {here}::test_gone",
        "m: tests/unit/test_test_modules.py::test_no_test_module_imports_another",
    ]
