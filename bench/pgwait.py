"""What the database sessions of the run's database are doing, sampled during a cell.

Every ``interval`` seconds one query to ``pg_stat_activity`` counts the connections to the
run's database that are running a statement, waiting for a lock, or idle inside an open
transaction (the application holds the transaction, and any row lock it took, while it runs
Python between statements). Averages over the cell say whether requests queue on a lock
(the audit chain head, a conversation row) or on the application's CPU.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import psycopg

_QUERY = """
SELECT state, wait_event_type, wait_event
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""


class ActivitySampler:
    def __init__(self, conninfo: str, interval: float = 0.05) -> None:
        self.conninfo = conninfo
        self.interval = interval
        self.samples = 0
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ActivitySampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self._stop.wait(self.interval):
                rows = conn.execute(_QUERY).fetchall()
                self.samples += 1
                for state, wait_type, wait_event in rows:
                    if state == "active" and wait_type == "Lock":
                        self.counts[f"lock:{wait_event}"] += 1
                        self.counts["waiting_on_lock"] += 1
                    elif state == "active":
                        self.counts["running"] += 1
                        if wait_type in ("IO", "LWLock"):
                            self.counts[f"{wait_type}:{wait_event}"] += 1
                    elif state == "idle in transaction":
                        self.counts["idle_in_transaction"] += 1

    def averages(self) -> dict[str, float]:
        """Mean number of connections in each state over the samples."""
        if not self.samples:
            return {}
        return {key: round(n / self.samples, 2) for key, n in sorted(self.counts.items())}
