"""tools/lock_pins.py: the lock's pins for the benchmark machine's Python.

The benchmark bundle (``tools/devbench-bundle.sh``) is built on one Python for another; what
these tests hold is that it gets exactly one version of every locked package, the one the lock
gives that Python, and that a line it cannot read stops it instead of unpinning a package.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = (ROOT / "requirements.lock").read_text(encoding="utf-8")

PER_VERSION = """\
# header
flask==3.1.3 \\
    --hash=sha256:aa
    # via medchat (pyproject.toml)
deprecated==1.3.1 ; python_full_version < '3.12' \\
    --hash=sha256:bb
deprecated==3.0.1 ; python_full_version >= '3.12' \\
    --hash=sha256:cc
tzdata==2026.6 ; sys_platform == 'win32' \\
    --hash=sha256:dd
"""


@pytest.fixture
def lock_pins(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import lock_pins

    return lock_pins


def test_the_target_python_decides_a_pin_the_lock_splits_by_version(lock_pins: ModuleType) -> None:
    assert lock_pins.constraints(PER_VERSION, "3.12") == "flask==3.1.3\ndeprecated==3.0.1\n"
    assert lock_pins.constraints(PER_VERSION, "3.11") == "flask==3.1.3\ndeprecated==1.3.1\n"


@pytest.mark.parametrize(
    "line", ["flask>=3 \\", "flask \\", "-e . \\", "flask===3.1.3 \\", "flask==3.1.3 ; \\ x"]
)
def test_a_requirement_that_is_not_a_pin_is_refused(lock_pins: ModuleType, line: str) -> None:
    with pytest.raises(ValueError, match="line 2 of the lock is not a pin"):
        lock_pins.pins("# header\n" + line + "\n    --hash=sha256:aa\n")


@pytest.mark.parametrize("python_version", ["3.11", "3.12"])
def test_every_dependency_of_the_lock_has_exactly_one_pin_on_a_supported_python(
    lock_pins: ModuleType, python_version: str
) -> None:
    """The real lock: each package once (never both of a per-version pair, never none), and
    every dependency pyproject.toml declares among them."""
    pins = [pin for pin in lock_pins.pins(LOCK) if pin.applies_on(python_version)]
    names = Counter(canonicalize_name(pin.name) for pin in pins)
    assert [name for name, count in names.items() if count > 1] == []
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for dependency in declared["dependencies"]:
        requirement = Requirement(dependency)
        if requirement.marker is None or requirement.marker.evaluate(
            {"python_version": python_version, "sys_platform": "linux"}
        ):
            assert canonicalize_name(requirement.name) in names, dependency


def test_the_whole_lock_is_read(lock_pins: ModuleType) -> None:
    """Every requirement line of the real lock becomes a pin (none skipped as a comment)."""
    opening = [line for line in LOCK.splitlines() if line and line[0] not in " #\t"]
    assert len(lock_pins.pins(LOCK)) == len(opening) > 50
    platform_only = {pin.name for pin in lock_pins.pins(LOCK) if not pin.applies_on("3.12")} - {
        pin.name for pin in lock_pins.pins(LOCK) if pin.applies_on("3.12")
    }
    assert platform_only == {"tzdata", "async-timeout"}
