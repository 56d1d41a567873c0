"""What the backup stream's tests share (``access_control.backup_stream``): the canary text a
sealed backup must hide, and a pipe that hands out a few bytes per read, as pg_dump's stdout
may.

``tests/unit/test_backup.py`` round-trips streams and databases through a sealed backup;
``tests/unit/access_control/test_backup_formats.py`` opens one by hand from its stated format.
Both seal the same canary and read from the same short-reading pipe.
"""

from __future__ import annotations

import io

CANARY = b"Backup canary B5: Jeanne Moreau, bloodwork"


class Trickle(io.RawIOBase):
    """A pipe that hands out a few bytes per read, as pg_dump's stdout may."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buffer), 7919, len(self._data))
        buffer[:n] = self._data[:n]
        self._data = self._data[n:]
        return n
