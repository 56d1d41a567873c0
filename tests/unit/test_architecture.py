"""The layers of docs/architecture.md are contracts ([tool.importlinter] in pyproject.toml).

``make test`` runs ``lint-imports`` before the suite; here the contracts are checked once as
they stand and once against a copy of the package with an import that runs back up a layer
(the web layer importing the console, as ``api/errors.py`` once did) or that pulls Flask into
the primitives, to prove each of those contracts can fail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter not installed")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy(tmp_path: Path) -> Path:
    for name in ("medchat", "access_control"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("medchat/web/errors.py", "import medchat.console.errors", "Each layer imports only"),
        ("medchat/services/consent.py", "import medchat.web.context", "Each layer imports only"),
        ("medchat/keys/sealing.py", "import medchat.services.context", "Each layer imports only"),
        ("medchat/db_driver.py", "import medchat.models", "Each layer imports only"),
        ("medchat/api/member.py", "import medchat.console.forms", "never import each other"),
        ("access_control/crypto.py", "import flask", "knows nothing of Flask"),
        ("access_control/roles.py", "import medchat.errors", "knows nothing of Flask"),
        ("medchat/services/export.py", "import flask", "hold no Flask state"),
        ("medchat/services/export.py", "import cryptography.hazmat", "Only the primitives"),
    ],
)
def test_an_import_against_the_layers_breaks_a_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    root = _copy(tmp_path)
    target = root / module
    text = target.read_text()
    marker = "from __future__ import annotations\n"
    assert marker in text
    target.write_text(text.replace(marker, f"{marker}\n{line}  # noqa\n", 1))
    result = _lint(root)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(contract in row for row in broken), result.stdout
