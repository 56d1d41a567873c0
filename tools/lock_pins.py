"""The pins of requirements.lock that apply on one Python, as pip constraints.

``tools/devbench-bundle.sh`` downloads wheels for the benchmark machine's interpreter (CPython
3.12 on Linux) while running on another one; the lock is universal and pins some packages per
Python version (``deprecated==1.3.1 ; python_full_version < '3.12'`` and ``3.0.1`` from 3.12).
pip evaluates a constraint's marker against the interpreter it runs on, not the one it
downloads for, so the markers are evaluated here, for the target, and only the pins that apply
are written, one ``name==version`` a line.

    python tools/lock_pins.py requirements.lock 3.12 > constraints.txt
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker

# A pin opens a requirement of the lock: `name==version`, perhaps ` ; marker`, then the
# ` \` that continues it onto its hash lines.
_PIN = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)==(?P<version>[A-Za-z0-9][A-Za-z0-9_.+!-]*)"
    r"\s*(?:;(?P<marker>[^\\]*))?\\?\s*$"
)


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: Marker | None

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
    """Every pin of a lock written by ``uv pip compile --generate-hashes`` (``make lock``).

    A line that begins a requirement but is not a pin is refused: it would otherwise leave a
    package free to take whatever version the index has that day.
    """
    found = []
    for number, line in enumerate(lock_text.splitlines(), start=1):
        if not line or line[0] in " #\t":
            continue  # hash lines, `# via` comments and the header
        pin = _PIN.match(line)
        if pin is None:
            raise ValueError(f"line {number} of the lock is not a pin: {line!r}")
        marker = pin["marker"]
        found.append(Pin(pin["name"], pin["version"], Marker(marker.strip()) if marker else None))
    return found


def constraints(lock_text: str, python_version: str) -> str:
    return "".join(
        f"{pin.name}=={pin.version}\n" for pin in pins(lock_text) if pin.applies_on(python_version)
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tools/lock_pins.py LOCK PYTHON_VERSION", file=sys.stderr)
        return 2
    sys.stdout.write(constraints(Path(argv[0]).read_text(encoding="utf-8"), argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
