"""Role public keys are pinned by fingerprint outside the database (SECURITY-MODEL 9).

Someone who can write the database must not be able to swap in a role public key of their
own and receive every new conversation. The fingerprints of the role public keys live in the
deployment: ``MEDCHAT_ROLE_KEY_PINS`` (``physician:<sha256 hex>,archive:<sha256 hex>``, any
number of each), or the pin file ``role-pins.json`` that ``medchat keys init`` and ``keys
rotate`` write into ``MEDCHAT_KEY_DIR``. A running server re-reads the file when it changes,
so a rotation needs no restart. The service refuses to seal to an unpinned key.
"""

from __future__ import annotations

import json
import os
import string
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from access_control.errors import ConfigurationError, KeyIntegrityFailure

PIN_FILE = "role-pins.json"
ROLES = ("physician", "archive")


def parse_pins(value: str) -> dict[str, frozenset[str]]:
    """``physician:abc…,archive:def…`` → {"physician": {...}, "archive": {...}}."""
    pins: dict[str, set[str]] = {role: set() for role in ROLES}
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        role, _, fingerprint = part.partition(":")
        if role not in pins or len(fingerprint) != 64 or not _is_hex(fingerprint):
            raise ConfigurationError(f"MEDCHAT_ROLE_KEY_PINS: cannot read {part!r}")
        pins[role].add(fingerprint.lower())
    return {role: frozenset(values) for role, values in pins.items()}


def _is_hex(text: str) -> bool:
    return all(c in string.hexdigits for c in text)


class RolePins:
    """The pinned role-key fingerprints, from the environment or the pin file."""

    def __init__(self, key_dir: Path, environment_value: str | None = None) -> None:
        self._path = key_dir / PIN_FILE
        self._fixed = parse_pins(environment_value) if environment_value else None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._cached: dict[str, frozenset[str]] = {role: frozenset() for role in ROLES}

    @property
    def path(self) -> Path:
        return self._path

    @property
    def fixed(self) -> bool:
        """Pinned in ``MEDCHAT_ROLE_KEY_PINS``: the service cannot add a pin, the operator must."""
        return self._fixed is not None

    def is_pinned(self, role: str, fingerprint: str) -> bool:
        return fingerprint.lower() in self.current().get(role, frozenset())

    def current(self) -> Mapping[str, frozenset[str]]:
        """The pins in force now (the file is re-read when its modification time changes)."""
        if self._fixed is not None:
            return self._fixed
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return {role: frozenset() for role in ROLES}
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                data = json.loads(self._path.read_text(encoding="utf-8"))
                self._cached = {
                    role: frozenset(str(fp).lower() for fp in data.get(role, [])) for role in ROLES
                }
                self._stamp = stamp
            return self._cached

    def require_pinned(self, role: str, fingerprint: str) -> None:
        """Raise ``KeyIntegrityFailure`` unless ``fingerprint`` is pinned for ``role``."""
        if not self.is_pinned(role, fingerprint):
            raise KeyIntegrityFailure(f"The {role} role key is not pinned by this deployment.")

    def add(self, role: str, fingerprints: Iterable[str]) -> None:
        """Pin more fingerprints (keys init and rotation); written atomically."""
        if self._fixed is not None:
            raise ConfigurationError(
                "role keys are pinned in MEDCHAT_ROLE_KEY_PINS: add the new fingerprint there"
            )
        current = {r: set(v) for r, v in self.current().items()}
        current[role].update(fp.lower() for fp in fingerprints)
        self._write(current)

    def retire(self, role: str, fingerprints: Iterable[str]) -> None:
        """Unpin fingerprints of retired keys."""
        if self._fixed is not None:
            return
        current = {r: set(v) for r, v in self.current().items()}
        current[role].difference_update(fp.lower() for fp in fingerprints)
        self._write(current)

    def _write(self, pins: Mapping[str, Iterable[str]]) -> None:
        temporary = self._path.with_suffix(".tmp")
        payload = {role: sorted(pins[role]) for role in ROLES}
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
        os.replace(temporary, self._path)
