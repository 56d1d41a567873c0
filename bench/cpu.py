"""CPU time used by the server under test, PostgreSQL and the load generator during a cell.

Read from ``/proc`` (Linux): for a gunicorn server, every process in its process group (the
master started it in a session of its own) plus the reaped children's time the master has
collected (recycled workers); for PostgreSQL, every ``postgres`` process plus what the
postmaster collected from exited backends. Divided by the requests of the cell, this says
where each request's CPU goes on a machine where everything shares two cores. The load
generator measures its own share (``bench.load``).
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces.
    head, _, rest = raw.rpartition(")")
    comm = head.partition("(")[2]
    return [str(pid), comm, *rest.split()]


def pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def machine_busy() -> float:
    """CPU seconds all CPUs have spent busy since boot (``/proc/stat``, idle and iowait out)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def snapshot(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far: one entry per named process group, ``postgres`` and ``machine``."""
    totals = dict.fromkeys(groups, 0.0)
    totals["postgres"] = 0.0
    totals["machine"] = machine_busy()
    by_pgid = {pgid: name for name, pgid in groups.items()}
    for pid in pids():
        fields = process_stat(pid)
        if fields is None or len(fields) < 17:
            continue
        # fields: pid comm state ppid pgrp session ... utime(13) stime(14) cutime(15) cstime(16)
        own = (int(fields[13]) + int(fields[14])) / _TICK
        reaped = (int(fields[15]) + int(fields[16])) / _TICK
        pgid, ppid = int(fields[4]), int(fields[3])
        if pgid in by_pgid:
            totals[by_pgid[pgid]] += own + (reaped if pid == pgid else 0.0)
        elif fields[1] == "postgres":
            parent = process_stat(ppid)
            is_postmaster = parent is None or parent[1] != "postgres"
            totals["postgres"] += own + (reaped if is_postmaster else 0.0)
    return totals


def available() -> bool:
    return Path("/proc/self/stat").exists()


def wait_for_quiet(
    max_wait: float, threshold: float = 0.15, sample: float = 1.0
) -> tuple[float, float]:
    """Wait (up to ``max_wait`` s) until the machine is nearly idle before a measurement.

    Other work on a small machine (a test suite, a build) takes CPU from the servers under
    test and skews a cell. Returns (seconds waited, busy share of the last sample).
    """
    import time

    cpus = os.cpu_count() or 1
    waited = 0.0
    while True:
        before = machine_busy()
        time.sleep(sample)
        busy = (machine_busy() - before) / sample / cpus
        if busy <= threshold or waited >= max_wait:
            return waited, busy
        waited += sample
