"""Mutation testing of the security core: mutmut, one module at a time, each with its tests.

``python tools/mutation.py [MODULE ...]`` runs mutmut over each module named in
``[tool.medchat-mutation.modules]`` of pyproject.toml (all of them when none is named), with
that module's own test selection, prints killed / survived / score per module and fails
(exit 1) when a module scores below its ``threshold``. Why per module: mutmut runs, for each
mutant, only the tests that called the mutated function during a first pass over the
selection, so a narrow selection keeps that pass short (the tool skips mutmut's clean run),
and each module's score is read on its own.

A module may name ``functions``: mutant-name patterns (``mutmut run`` takes them, fnmatch
style) when only the functions that decide are mutated, because the whole module would not fit
the job's time; its score then counts those mutants only. ``postgresql = true`` runs its tests
against PostgreSQL too (``MEDCHAT_TEST_DATABASE_URL`` must be set), for paths only that
database takes; ``postgresql = "only"`` runs them there alone.

Each module runs in ``.mutation/<module>/`` (ignored by git): links to ``medchat``,
``access_control`` and ``tests``, and a pyproject.toml holding the project's pytest settings
and a ``[tool.mutmut]`` table for that module only (mutmut reads its settings from the
working directory). The mutants are made afresh on every run: mutmut's cache keys on file
times, and a stale mutant is worse than a slow run.

Score = killed / (killed + survived), where a timeout or a crash of the test process counts
as killed and a mutant no selected test runs counts as survived. Survivors that are
equivalent mutants (no behaviour can tell them from the original) are listed in
tests/mutation/equivalent.toml, each with the mutated line and a reason, and left out of the
score; an entry whose line no longer matches the mutant of that name is reported as stale
and fails the run, so the list is reviewed again whenever the code under it changes.

``--survivors`` prints the diff of every survivor that is not listed as equivalent.
``--check MUTANT [PYTEST ARGS]`` proves a test kills a mutant (``tools/mutation_check.py``).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import mutation_order

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
EQUIVALENT = ROOT / "tests" / "mutation" / "equivalent.toml"
SCHEMA_CACHE = WORK / "schema-cache"
LINKED = ("medchat", "access_control", "tests")
KILLED = {"killed", "timeout", "segfault", "caught by type check"}
# "not checked" only for a mutant the run should have reached: counted against the score.
SURVIVED = {"survived", "no tests", "suspicious", "not checked"}


@dataclass
class Module:
    name: str
    mutate: list[str]
    tests: list[str]
    threshold: float
    postgresql: bool = False
    #: ``postgresql = "only"``: its tests run there and not on SQLite (the module has no path
    #: of SQLite's own, and one backend halves its time).
    postgresql_only: bool = False
    #: ``default = false``: run only when named (a module not yet at its threshold is measured
    #: by hand and kept out of the CI job until it is).
    default: bool = True
    #: Mutant-name patterns (fnmatch, as ``mutmut run`` takes them) when only the functions that
    #: decide are mutated, to keep the module within the job's time; empty: every function.
    functions: list[str] = field(default_factory=list)

    def covers(self, mutant: str) -> bool:
        return not self.functions or any(fnmatch.fnmatch(mutant, p) for p in self.functions)


@dataclass
class Outcome:
    module: Module
    statuses: dict[str, str] = field(default_factory=dict)
    equivalent: set[str] = field(default_factory=set)
    stale: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def killed(self) -> int:
        return sum(1 for s in self.statuses.values() if s in KILLED)

    @property
    def survivors(self) -> list[str]:
        return sorted(
            name
            for name, status in self.statuses.items()
            if status in SURVIVED and name not in self.equivalent
        )

    @property
    def score(self) -> float:
        counted = self.killed + len(self.survivors)
        return 100.0 * self.killed / counted if counted else 100.0


def load_modules() -> dict[str, Module]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    table = data["tool"]["medchat-mutation"]["modules"]
    return {
        name: Module(
            name=name,
            mutate=entry["mutate"],
            tests=entry["tests"],
            threshold=float(entry["threshold"]),
            postgresql=bool(entry.get("postgresql", False)),
            postgresql_only=entry.get("postgresql") == "only",
            default=bool(entry.get("default", True)),
            functions=list(entry.get("functions", [])),
        )
        for name, entry in table.items()
    }


def load_equivalent() -> dict[str, dict[str, str]]:
    if not EQUIVALENT.exists():
        return {}
    return {e["mutant"]: e for e in tomllib.loads(EQUIVALENT.read_text()).get("equivalent", [])}


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def prepare(module: Module) -> Path:
    """A fresh working directory for ``module``: links to the code and its own settings."""
    workdir = WORK / module.name
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    for name in LINKED:
        (workdir / name).symlink_to(ROOT / name)
    pytest_settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    options = pytest_settings["ini_options"]
    lines = ["[tool.pytest.ini_options]"]
    for key, value in options.items():
        lines.append(f"{key} = {json.dumps(value)}")
    lines += [
        "",
        "[tool.mutmut]",
        f"source_paths = {_toml_list(['medchat', 'access_control'])}",
        f"only_mutate = {_toml_list(module.mutate)}",
        # Without the unraisable-exception plugin: at the end of every session it runs the
        # garbage collector several times over (a third of a mutant's run on a warm process).
        # Without the plugins no selection needs (xdist, schemathesis, anyio, hypothesis's
        # reporting: @given runs without it): each adds its options and hooks to every
        # mutant's session, about 40 ms a mutant.
        "pytest_add_cli_args = ['-p', 'no:cacheprovider', '-p', 'no:unraisableexception', "
        "'-p', 'no:xdist', '-p', 'no:schemathesis', '-p', 'no:anyio', "
        "'-p', 'no:hypothesispytest', '-q']",
        f"pytest_add_cli_args_test_selection = {_toml_list(module.tests)}",
        # The first pass tells mutmut which tests reach which function; the check that every
        # test's changes to the working directory are kept is for projects that write there.
        "use_git_change_detection = false",
        "",
    ]
    (workdir / "pyproject.toml").write_text("\n".join(lines))
    return workdir


def _environment(module: Module) -> dict[str, str]:
    env = dict(os.environ)
    # The mutated copy under mutants/ must be the one imported, never the checkout.
    env.pop("PYTHONPATH", None)
    # Every mutant is a pytest run of its own: each copies the migrated schema made by the
    # first instead of migrating again (tests/support/databases.py).
    env["MEDCHAT_TEST_SCHEMA_CACHE"] = str(SCHEMA_CACHE)
    # mutmut stops a mutant's run at the first failing test: the fastest go first, timed
    # whole (set-up included) in its first pass over the selection (tests/support/fast_first.py).
    env["MEDCHAT_TEST_FAST_FIRST"] = str(WORK / module.name / "test-durations.json")
    env.pop("MEDCHAT_TEST_BACKENDS", None)
    if module.postgresql_only:
        env["MEDCHAT_TEST_BACKENDS"] = "postgresql"
    if not module.postgresql:
        env.pop("MEDCHAT_TEST_DATABASE_URL", None)
    elif not env.get("MEDCHAT_TEST_DATABASE_URL"):
        raise SystemExit(
            f"mutation: module {module.name} needs PostgreSQL (MEDCHAT_TEST_DATABASE_URL)"
        )
    return env


def _mutmut(workdir: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    mutmut = Path(sys.executable).with_name("mutmut")
    return subprocess.run(  # noqa: S603 (our own tool, fixed arguments)
        [str(mutmut), *args], cwd=workdir, env=env, text=True, capture_output=True, check=False
    )


def statuses(workdir: Path, env: dict[str, str]) -> dict[str, str]:
    listed = _mutmut(workdir, "results", "--all", "true", env=env)
    found = {}
    for line in listed.stdout.splitlines():
        match = re.match(r"\s+(\S+): (.+)$", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def mutated_line(workdir: Path, name: str, env: dict[str, str]) -> str:
    """The first added line of a mutant's diff, stripped: what equivalent.toml records."""
    diff = _mutmut(workdir, "show", name, env=env).stdout
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            return line[1:].strip()
    return ""


def generate(workdir: Path, workers: int, env: dict[str, str]) -> None:
    """Make the module's mutants (``mutmut run``'s first step, on its own), running no test.

    ``mutmut run`` has no generate-only mode: with a filter that matches nothing it still runs
    the whole selection twice (its pass over which test reaches which function, and the clean
    run) before it finds nothing to do. The names are needed first, to set the listed
    equivalent mutants aside; the one ``mutmut run`` after this reuses the mutants made here.
    """
    made = subprocess.run(  # noqa: S603 (our own tool, fixed arguments)
        [sys.executable, "-c", _GENERATE, str(workers)],
        cwd=workdir,
        env=env,
        text=True,
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        raise SystemExit(f"mutation: making the mutants failed:\n{made.stderr[-4000:]}")


# mutmut 3.8's own steps before it runs any test (mutmut.__main__._run), in its working dir.
_GENERATE = """
import os, sys
from mutmut.__main__ import create_mutants
from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir, setup_source_paths
os.makedirs("mutants", exist_ok=True)
copy_src_dir()
copy_also_copy_files()
setup_source_paths()
create_mutants(int(sys.argv[1]))
"""


# ``mutmut run`` without its clean run, each mutant's tests run in a session kept across the
# module's mutants (tools/mutation_session.py).
_RUN = f"""
import sys
sys.path.append({str(Path(__file__).resolve().parent)!r})
import mutmut.__main__ as mutmut_main
import mutation_session
mutation_session.install(mutmut_main)
sys.argv = ["mutmut", *sys.argv[1:]]
sys.exit(mutmut_main.cli())
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(module: Module, workers: int, equivalent: dict[str, dict[str, str]]) -> Outcome:
    """Generate the module's mutants, check the listed equivalent ones against their lines
    without running them (a survivor runs every test that reaches its function: the costliest
    mutants of a run, and known to survive), then run the rest."""
    workdir = prepare(module)
    mutation_order.seed(module.name, workdir / "test-durations.kills")
    env = _environment(module)
    started = time.monotonic()
    generate(workdir, workers, env)
    generated = {n for n in statuses(workdir, env) if module.covers(n)}
    if not generated:
        raise SystemExit(f"mutation: mutmut made no mutants for {module.name}")
    outcome = Outcome(module)
    for name in sorted(generated & equivalent.keys()):
        if mutated_line(workdir, name, env) == equivalent[name]["line"].strip():
            outcome.equivalent.add(name)
        else:
            outcome.stale.append(name)
    to_run = sorted(generated - outcome.equivalent)
    done = subprocess.run(  # noqa: S603 (our own tool, fixed arguments)
        [sys.executable, "-c", _RUN, "run", "--max-children", str(workers), *to_run],
        cwd=workdir,
        env=env,
        text=True,
        capture_output=True,
        check=False,
    )
    outcome.seconds = time.monotonic() - started
    (workdir / "mutmut-run.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
        raise SystemExit(f"mutation: mutmut failed on {module.name} (exit {done.returncode})")
    found = statuses(workdir, env)
    outcome.statuses = {name: found[name] for name in generated}
    mutation_order.keep(module.name, workdir / "test-durations.kills")
    return outcome


def report(outcomes: list[Outcome], wall: float, cpu: float) -> bool:
    """The table, and whether every module passed. ``wall`` and ``cpu`` are the whole job's
    (the modules overlap: a module's time is its own, from its start to its score)."""
    print()
    print(
        f"{'module':<16} {'mutants':>7} {'killed':>6} {'survived':>8} {'equiv.':>6} "
        f"{'score':>6} {'threshold':>9} {'time':>6}"
    )
    ok = True
    for o in outcomes:
        passed = o.score + 1e-9 >= o.module.threshold and not o.stale
        ok &= passed
        print(
            f"{o.module.name:<16} {len(o.statuses):>7} {o.killed:>6} {len(o.survivors):>8} "
            f"{len(o.equivalent):>6} {o.score:>5.1f}% {o.module.threshold:>8.0f}% "
            f"{o.seconds:>5.0f}s "
            f"{'' if passed else 'BELOW THRESHOLD' if not o.stale else 'STALE'}"
        )
        for name in o.stale:
            print(f"  stale entry in {EQUIVALENT.relative_to(ROOT)}: {name} (line changed)")
    # CPU of mutmut and its workers: what the job costs on an idle machine (wall time on a
    # shared one says more about the neighbours).
    print(f"total: {wall:.0f}s wall, {cpu:.0f}s CPU")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="modules to run (default: all)")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("MUTATION_WORKERS", 2)))
    parser.add_argument(
        "--parallel",
        type=int,
        default=int(os.environ.get("MUTATION_PARALLEL", 2)),
        help="modules run at once (default 2)",
    )
    parser.add_argument("--survivors", action="store_true", help="print each survivor's diff")
    parser.add_argument("--check", metavar="MUTANT", help="apply MUTANT to a copy, run pytest")
    args, rest = parser.parse_known_args(argv)
    modules = load_modules()
    if args.check:
        from mutation_check import check  # the --check mode, in a module of its own

        return check(args.check, args.modules + rest, modules)
    unknown = [m for m in args.modules if m not in modules]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {sorted(modules)}")
    equivalent = load_equivalent()
    names = args.modules or [n for n, m in modules.items() if m.default]
    started, cpu = time.monotonic(), _children_cpu()
    _forget_schema_copies()
    try:
        # Two modules at a time: a module's first pass uses one core, its mutants
        # both; a second module's work fills the other core meanwhile.
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            outcomes = list(pool.map(lambda n: _run_one(modules[n], args, equivalent), names))
    finally:
        _forget_schema_copies()
    ok = report(outcomes, time.monotonic() - started, _children_cpu() - cpu)
    return 0 if ok else 1


def _run_one(
    module: Module, args: argparse.Namespace, equivalent: dict[str, dict[str, str]]
) -> Outcome:
    # One write per line: the two modules running at once print from two threads.
    print(f"mutation: {module.name} ...\n", end="", flush=True)
    outcome = run(module, args.workers, equivalent)
    print(f"mutation: {module.name} done in {outcome.seconds:.0f}s\n", end="", flush=True)
    if args.survivors:
        env = _environment(module)
        lines = []
        for survivor in outcome.survivors:
            lines.append(f"--- {survivor} ({outcome.statuses[survivor]})")
            lines.append(_mutmut(WORK / module.name, "show", survivor, env=env).stdout)
        print("\n".join(lines), flush=True)
    return outcome


def _forget_schema_copies() -> None:
    """Remove the migrated copies the mutants' runs share (made afresh by each run)."""
    shutil.rmtree(SCHEMA_CACHE, ignore_errors=True)
    if os.environ.get("MEDCHAT_TEST_DATABASE_URL"):
        sys.path.insert(0, str(ROOT))
        from tests.support.databases import drop_schema_templates

        drop_schema_templates(os.environ["MEDCHAT_TEST_DATABASE_URL"], str(SCHEMA_CACHE))


if __name__ == "__main__":
    sys.exit(main())
