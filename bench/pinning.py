"""The sign-in flood's load generator on CPUs of its own (``--flood-cpus``).

An attacker's clients run on the attacker's machines. On one machine they take cores from the
server they attack, and the cheaper the server's refusal, the faster they spin (bench/README.md,
the flood through nginx: the flood's generator took 62-64 % of two cores). With ``--flood-cpus``
the flood's load processes run only on the CPUs named, and everything that serves the readers
(the servers' process groups, nginx, every PostgreSQL process, the readers' load processes) only
on the others, in the quiet slices and the flooded ones alike, so the ratio compares the
readers with and without the server's own share of the flood's cost. Linux only
(``sched_setaffinity`` on every thread of every process named); restored when the cell ends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

from bench import cpu


def all_cpus() -> set[int]:
    return set(os.sched_getaffinity(0))


def parse(spec: str) -> set[int]:
    """``"1"`` or ``"2-3,6"`` into CPU numbers; refuses CPUs this process cannot use."""
    cpus: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.strip().partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    if not cpus or not cpus < all_cpus():
        raise ValueError(f"--flood-cpus {spec!r}: a proper subset of CPUs {sorted(all_cpus())}")
    return cpus


def _threads(pid: int) -> list[int]:
    try:
        return [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def server_side_pids(groups: Iterable[int]) -> list[int]:
    """Every process of the named process groups, and every ``postgres`` process."""
    wanted = set(groups)
    found = []
    for pid in cpu.pids():
        fields = cpu.process_stat(pid)
        # fields: pid comm state ppid pgrp ...
        if fields is not None and (int(fields[4]) in wanted or fields[1] == "postgres"):
            found.append(pid)
    return found


def _set(pids: Iterable[int], cpus: set[int]) -> None:
    for pid in pids:
        for tid in _threads(pid):
            with contextlib.suppress(OSError):  # gone meanwhile
                os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def server_side_on(groups: Iterable[int], cpus: set[int]) -> Iterator[None]:
    """The server side (and this process) on ``cpus`` until the block ends, then on all."""
    everything = all_cpus()
    # Every thread of this process too: the load processes it starts inherit the starting
    # thread's CPUs (the flood's set its own, ``load.run_cell``'s ``cpus``).
    _set([*server_side_pids(groups), os.getpid()], cpus)
    try:
        yield
    finally:
        _set([*server_side_pids(groups), os.getpid()], everything)
