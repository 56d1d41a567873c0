"""tools/lock_pins.py: requirements.lock for the benchmark machine's Python.

The benchmark bundle (``tools/devbench-bundle.sh``) is built on one Python for another; what
these tests hold is that it asks for exactly one version of every locked package, the one the
lock gives that Python, that it takes only files the lock pins by hash (or wheels built here
from a source the lock vouched for), and that a line it cannot read stops it instead of
unpinning a package.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = (ROOT / "requirements.lock").read_text(encoding="utf-8")
FLASK_WHEEL = b"flask's wheel"
FLASK_SHA = hashlib.sha256(FLASK_WHEEL).hexdigest()

PER_VERSION = f"""\
# header
flask==3.1.3 \\
    --hash=sha256:{FLASK_SHA} \\
    --hash=sha256:{"1" * 64}
    # via medchat (pyproject.toml)
deprecated==1.3.1 ; python_full_version < '3.12' \\
    --hash=sha256:{"2" * 64}
deprecated==3.0.1 ; python_full_version >= '3.12' \\
    --hash=sha256:{"3" * 64}
    # via
    #   limits
tzdata==2026.6 ; sys_platform == 'win32' \\
    --hash=sha256:{"4" * 64}
"""


@pytest.fixture
def lock_pins(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import lock_pins

    return lock_pins


def test_the_target_python_decides_a_pin_the_lock_splits_by_version(lock_pins: ModuleType) -> None:
    assert lock_pins.constraints(PER_VERSION, "3.12") == "flask==3.1.3\ndeprecated==3.0.1\n"
    assert lock_pins.constraints(PER_VERSION, "3.11") == "flask==3.1.3\ndeprecated==1.3.1\n"


def test_each_pin_keeps_its_own_hashes(lock_pins: ModuleType) -> None:
    hashes = {(pin.name, pin.version): pin.hashes for pin in lock_pins.pins(PER_VERSION)}
    assert hashes[("flask", "3.1.3")] == {FLASK_SHA, "1" * 64}
    assert hashes[("deprecated", "3.0.1")] == {"3" * 64}


@pytest.mark.parametrize(
    "line", ["flask>=3 \\", "flask \\", "-e . \\", "flask===3.1.3 \\", "flask==3.1.3 ; \\ x"]
)
def test_a_requirement_that_is_not_a_pin_is_refused(lock_pins: ModuleType, line: str) -> None:
    with pytest.raises(ValueError, match="line 2 of the lock is not a pin"):
        lock_pins.pins(f"# header\n{line}\n    --hash=sha256:{'0' * 64}\n")


@pytest.mark.parametrize(
    "hash_line", ["    --hash=sha256:abc", "    --hash=md5:" + "0" * 64, "    flask==3.1.3"]
)
def test_a_hash_line_it_cannot_read_is_refused(lock_pins: ModuleType, hash_line: str) -> None:
    with pytest.raises(ValueError, match="line 3 of the lock is not a pin's hash"):
        lock_pins.pins(f"# header\nflask==3.1.3 \\\n{hash_line}\n")


def test_a_pin_without_a_hash_is_refused(lock_pins: ModuleType) -> None:
    with pytest.raises(ValueError, match="pins click without a hash"):
        lock_pins.pins(f"flask==3.1.3 \\\n    --hash=sha256:{'0' * 64}\nclick==8.5.1\n")


def test_the_bundle_takes_only_files_the_lock_pins_or_wheels_built_here(
    lock_pins: ModuleType, tmp_path: Path
) -> None:
    bundle, built = tmp_path / "whl", tmp_path / "built"
    bundle.mkdir()
    built.mkdir()
    (bundle / "flask-3.1.3-py3-none-any.whl").write_bytes(FLASK_WHEEL)
    (bundle / "pip-26.3-py3-none-any.whl").write_bytes(b"pip")
    assert lock_pins.check(PER_VERSION, bundle.glob("*.whl"), built.glob("*.whl")) == (
        [],
        ["pip-26.3-py3-none-any.whl"],
    )

    swapped = b"another deprecated"
    (bundle / "deprecated-3.0.1-py3-none-any.whl").write_bytes(swapped)
    problems, _ = lock_pins.check(PER_VERSION, bundle.glob("*.whl"), built.glob("*.whl"))
    assert problems == [
        "deprecated-3.0.1-py3-none-any.whl is not a file requirements.lock pins "
        f"(sha256 {hashlib.sha256(swapped).hexdigest()})"
    ]

    (built / "deprecated-3.0.1-py3-none-any.whl").write_bytes(swapped)  # built here
    assert lock_pins.check(PER_VERSION, bundle.glob("*.whl"), built.glob("*.whl"))[0] == []


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
    """Every requirement line of the real lock becomes a pin, with every hash line under it."""
    opening = [line for line in LOCK.splitlines() if line and line[0] not in " #\t"]
    pins = lock_pins.pins(LOCK)
    assert len(pins) == len(opening) > 50
    assert sum(len(pin.hashes) for pin in pins) == LOCK.count("--hash=sha256:")
    platform_only = {pin.name for pin in pins if not pin.applies_on("3.12")} - {
        pin.name for pin in pins if pin.applies_on("3.12")
    }
    assert platform_only == {"tzdata", "async-timeout"}
