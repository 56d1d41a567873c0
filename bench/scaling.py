"""``--scaling``: the same cells at several worker counts, to see what more workers buy.

Issue 15: with one lock on every send (the audit chain head), more cores or hosts add nothing
to send throughput. The scaling mode measures the send and read-50 cells at 4 workers and at
the machine's core count (or the counts ``--scaling-workers`` names), restarting both stacks
with each count (the same database and data), and prints per worker count the ratio to the
bare app and the mean number of connections waiting on a lock: where that column grows with
the workers while the ratio falls, a lock, not the CPU, sets the pace.
"""

from __future__ import annotations

import argparse
import os

from bench.load import CellResult
from bench.report import TARGETS, cell_ratio

Cells = dict[str, list[tuple[CellResult, CellResult]]]


def worker_counts(args: argparse.Namespace) -> list[int]:
    """``--scaling-workers`` (comma-separated), else 4 and the core count; in order, once each."""
    if args.scaling_workers:
        counts = [int(c) for c in args.scaling_workers.split(",") if c.strip()]
    else:
        counts = [4, os.cpu_count() or 1]
    return list(dict.fromkeys(c for c in counts if c >= 1))


def table(by_workers: dict[int, Cells]) -> str:
    """One row per worker count, operation and client count."""
    lines = [
        "scaling: the same cells at each worker count (threads per worker unchanged); "
        "lock = mean connections waiting for a lock (medchat / bare)",
        "| workers | operation | clients | medchat req/s | bare req/s | ratio | target "
        "| lock medchat | lock bare |",
        "|--------:|:----------|--------:|------:|------:|------:|------:|------:|------:|",
    ]
    for workers, cells in by_workers.items():
        for op, rows in cells.items():
            for medchat, bare in rows:
                lines.append(
                    f"| {workers:>7} | {op:<9} | {medchat.clients:>7} "
                    f"| {medchat.throughput:.1f} | {bare.throughput:.1f} "
                    f"| {cell_ratio(medchat, bare):.2f} | {TARGETS[op]:.2f} "
                    f"| {medchat.db_activity.get('waiting_on_lock', 0.0):.2f} "
                    f"| {bare.db_activity.get('waiting_on_lock', 0.0):.2f} |"
                )
    return "\n".join(lines)
