"""requirements.lock for the benchmark bundle of a machine with another Python.

``tools/devbench-bundle.sh`` downloads wheels for the benchmark machine's interpreter (CPython
3.12 on Linux) while running on another one. Two things it needs from the lock:

``constraints``: the pins that apply on the target, one ``name==version`` a line. The lock is
universal and pins some packages per Python version (``deprecated==1.3.1 ; python_full_version
< '3.12'`` and ``3.0.1`` from 3.12); pip evaluates a constraint's marker for the interpreter it
runs on, not the one it downloads for, so the markers are evaluated here, for the target.

``check``: every wheel of the bundle that the lock names is one of the files the lock pins by
hash (the lock holds the hash of every file of every platform), or a wheel built here from a
source the lock's hash vouched for (``pip wheel --require-hashes``): the bundle then runs
byte for byte what production installs. Packages the lock does not name (the embedded
PostgreSQL and its helpers, pip) are listed, not refused: they serve the benchmark only.

    python tools/lock_pins.py constraints requirements.lock 3.12 > constraints.txt
    python tools/lock_pins.py check requirements.lock .devbench/whl BUILT_DIR
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name, parse_wheel_filename

# A pin opens a requirement of the lock: `name==version`, perhaps ` ; marker`, then the
# ` \` that continues it onto its hash lines.
_PIN = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)==(?P<version>[A-Za-z0-9][A-Za-z0-9_.+!-]*)"
    r"\s*(?:;(?P<marker>[^\\]*))?\\?\s*$"
)
_HASH = re.compile(r"\s+--hash=sha256:(?P<digest>[0-9a-f]{64})\s*\\?\s*$")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: Marker | None
    hashes: frozenset[str]

    def applies_on(self, python_version: str) -> bool:
        """Whether the lock installs this pin on CPython ``python_version`` (``3.12``) on Linux."""
        if self.marker is None:
            return True
        return self.marker.evaluate(
            {
                "python_version": python_version,
                "python_full_version": python_version + ".0",
                "implementation_name": "cpython",
                "platform_python_implementation": "CPython",
                "sys_platform": "linux",
                "platform_system": "Linux",
                "os_name": "posix",
            }
        )


def pins(lock_text: str) -> list[Pin]:
    """Every pin of a lock written by ``uv pip compile --generate-hashes`` (``make lock``),
    with the sha256 of each of its files.

    A line that begins a requirement but is not a pin is refused, and so is a pin without a
    hash: either would leave a package free to take whatever the index has that day.
    """
    found: list[tuple[str, str, str | None, set[str]]] = []
    for number, line in enumerate(lock_text.splitlines(), start=1):
        if not line or line.lstrip().startswith("#"):
            continue  # the header and the `# via` comments
        if line[0] in " \t":
            digest = _HASH.match(line)
            if digest is None or not found:
                raise ValueError(f"line {number} of the lock is not a pin's hash: {line!r}")
            found[-1][3].add(digest["digest"])
            continue
        pin = _PIN.match(line)
        if pin is None:
            raise ValueError(f"line {number} of the lock is not a pin: {line!r}")
        found.append((pin["name"], pin["version"], pin["marker"], set()))
    for name, _, _, hashes in found:
        if not hashes:
            raise ValueError(f"the lock pins {name} without a hash")
    return [
        Pin(name, version, Marker(marker.strip()) if marker else None, frozenset(hashes))
        for name, version, marker, hashes in found
    ]


def constraints(lock_text: str, python_version: str) -> str:
    return "".join(
        f"{pin.name}=={pin.version}\n" for pin in pins(lock_text) if pin.applies_on(python_version)
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(
    lock_text: str, wheels: Iterable[Path], built: Iterable[Path]
) -> tuple[list[str], list[str]]:
    """The problems with a bundle's ``wheels`` (a wheel of a locked package that is neither a
    file the lock pins nor one of the ``built`` wheels), and the wheels of packages the lock
    does not name."""
    locked: dict[str, set[str]] = {}
    for pin in pins(lock_text):
        locked.setdefault(canonicalize_name(pin.name), set()).update(pin.hashes)
    made_here = {sha256(path) for path in built}
    problems, unlocked = [], []
    for path in sorted(wheels):
        name = parse_wheel_filename(path.name)[0]
        if name not in locked:
            unlocked.append(path.name)
        elif (digest := sha256(path)) not in locked[name] and digest not in made_here:
            problems.append(f"{path.name} is not a file requirements.lock pins (sha256 {digest})")
    return problems, unlocked


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "constraints":
        sys.stdout.write(constraints(Path(argv[1]).read_text(encoding="utf-8"), argv[2]))
        return 0
    if len(argv) == 4 and argv[0] == "check":
        problems, unlocked = check(
            Path(argv[1]).read_text(encoding="utf-8"),
            Path(argv[2]).glob("*.whl"),
            Path(argv[3]).glob("*.whl"),
        )
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"not in the lock (the benchmark's own): {', '.join(unlocked) or 'none'}")
        return 1 if problems else 0
    print(
        "usage: python tools/lock_pins.py constraints LOCK PYTHON_VERSION\n"
        "       python tools/lock_pins.py check LOCK WHEEL_DIR BUILT_WHEEL_DIR",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
