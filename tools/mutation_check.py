"""``tools/mutation.py --check MUTANT [PYTEST ARGS]``: prove that a test kills one mutant.

It copies the code and the tests to a scratch directory, applies the mutant there (``mutmut
apply``, from the last run of its module), prints the change and runs pytest with the given
arguments against that copy; the checkout is never touched. Exit 0: killed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mutation import LINKED, ROOT, WORK, Module, _environment, _mutmut


def _module_of(mutant: str, modules: dict[str, Module]) -> Module:
    for module in modules.values():
        for path in module.mutate:
            dotted = path.removesuffix(".py").replace("/", ".") + "."
            if mutant.startswith(dotted) and (WORK / module.name / "mutants").exists():
                return module
    raise SystemExit(f"mutation: no run holds {mutant}; run its module first")


def check(mutant: str, pytest_args: list[str], modules: dict[str, Module]) -> int:
    """Apply ``mutant`` to a copy of the code and run ``pytest_args`` there: exit 1 = killed."""
    module = _module_of(mutant, modules)
    with tempfile.TemporaryDirectory(prefix="mutant-") as scratch:
        copy = Path(scratch)
        for name in LINKED:
            shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(WORK / module.name / "pyproject.toml", copy / "pyproject.toml")
        (copy / "mutants").symlink_to(WORK / module.name / "mutants")
        env = _environment(module)
        applied = _mutmut(copy, "apply", mutant, env=env)
        if applied.returncode != 0:
            raise SystemExit(applied.stdout + applied.stderr)
        for path in module.mutate:
            diff = subprocess.run(  # noqa: S603
                ["git", "diff", "--no-index", "-U0", str(ROOT / path), str(copy / path)],  # noqa: S607
                text=True,
                capture_output=True,
                check=False,
            ).stdout
            print("\n".join(line for line in diff.splitlines() if line[:1] in "+-@"))
        (copy / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
        env["PYTHONPATH"] = str(copy)
        ran = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *pytest_args],
            cwd=copy,
            env=env,
            text=True,
            capture_output=True,
            check=False,
        )
        print(ran.stdout[-3000:])
        verdict = "KILLED" if ran.returncode == 1 else "SURVIVED" if ran.returncode == 0 else "?"
        print(f"mutation: {mutant}: {verdict} (pytest exit {ran.returncode})")
        return 0 if ran.returncode == 1 else 1
