"""A test module imports nothing from another test module: what tests share is in tests/support.

A helper, constant or fixture taken from another test module ties the two together: splitting
or renaming the one breaks the other, pytest collects the imported module's fixtures twice
under two names, and the helper's one place is a file whose name says it is a test. Every
module under ``tests/`` is read (a new one joins by itself), imports inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imports_of_test_modules(source: str) -> list[str]:
    """The modules named ``test_*`` (or ``conftest``) that this source imports from."""
    named = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            # A relative import (``from .test_auth import ...``) is inside tests/ by being here.
            module = "." * node.level + (node.module or "")
            names = [module] + [f"{module}.{alias.name}".replace("..", ".") for alias in node.names]
            inside = node.level > 0
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
            inside = False
        else:
            continue
        named += [
            name
            for name in names
            if (inside or name.split(".")[0] == "tests")
            and any(part.startswith("test_") or part == "conftest" for part in name.split("."))
        ]
    return named


def test_no_test_module_imports_another():
    offenders = {
        str(path.relative_to(TESTS)): found
        for path in sorted(TESTS.rglob("*.py"))
        if (found := imports_of_test_modules(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_the_import_check_can_fail():
    source = (
        "from tests.api.test_auth import REGISTRATION\n"
        "import tests.unit.test_backup\n"
        "def later():\n"
        "    from tests.security.conftest import planted_world\n"
        "from tests.support.accounts import login\n"
        "from tests.api import test_compliance\n"
        "from .test_metrics import scrape\n"
        "from . import conftest\n"
        "from .support import helpers\n"
    )
    assert imports_of_test_modules(source) == [
        "tests.api.test_auth",
        "tests.api.test_auth.REGISTRATION",
        "tests.unit.test_backup",
        "tests.api.test_compliance",
        ".test_metrics",
        ".test_metrics.scrape",
        ".conftest",
        "tests.security.conftest",
        "tests.security.conftest.planted_world",
    ]
