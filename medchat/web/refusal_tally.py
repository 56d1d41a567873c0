"""Refusals for a dependency that is down or full are audited as a tally, not one by one.

A sign-in flood that fills this process's password work (``access_control.password_work``),
or a Redis outage, turns hundreds of requests a second away with 503 ``dependency_down``. One
audit entry each made turning a request away dearer than serving a read (bench/README.md, the
flood cell: 6.6-8.7 ms with the entry, 1.1-2.0 ms without), so the flood took the readers'
capacity through the audit log itself. These refusals change nothing and name no account (the
gate is taken before the account lookup), so the audit keeps their number, not each one: the
first refusal of a (dependency, endpoint) in a window writes an entry; the ones after it, in
this process, only count; the next entry after the window carries the count
(``details.refused``: the refusals it stands for, itself included). Refusals that name an
account (a wrong password, a lockout, a 403) stay audited one by one elsewhere.

What it costs: a process that stops within a window loses at most that window's count (not an
entry: the first refusal of every window is written). The log line follows the same tally.

``counted`` serves a refusal made before Flask handles the request (``web.password_gate``):
it counts the refusal when its window's entry is already written, and otherwise leaves the
request to the full path, whose error handler writes the entry (``admit``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: ``app.extensions`` key of the process's tally.
EXTENSION = "medchat.refusal_tally"
WINDOW_SECONDS = 1.0


class RefusalTally:
    """Per process: which refusal to write, and how many it stands for."""

    def __init__(
        self, window_seconds: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._written: dict[tuple[str, str], float] = {}
        self._pending: dict[tuple[str, str], int] = {}

    def admit(self, dependency: str, endpoint: str) -> int | None:
        """The count an entry for this refusal must carry, or None: only count it."""
        key = (dependency, endpoint)
        now = self.clock()
        with self._lock:
            pending = self._pending.get(key, 0) + 1
            if self._written_within(key, now):
                self._pending[key] = pending
                return None
            self._written[key] = now
            self._pending[key] = 0
            return pending

    def counted(self, dependency: str, endpoint: str) -> bool:
        """Count this refusal if its window's entry is written already; False: not counted,
        so it must go where ``admit`` is called and the entry written."""
        key = (dependency, endpoint)
        now = self.clock()
        with self._lock:
            if not self._written_within(key, now):
                return False
            self._pending[key] = self._pending.get(key, 0) + 1
            return True

    def _written_within(self, key: tuple[str, str], now: float) -> bool:
        """This window's entry for ``key`` is written (call with the lock held)."""
        last = self._written.get(key)
        return last is not None and now - last < self.window
