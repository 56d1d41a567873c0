"""Measuring cells: one stack at one client count, and the two stacks of a pair interleaved.

The machine's speed drifts while a run lasts (a shared virtual machine's neighbours, CPU
frequency, caches), by more than the effects measured: the same bare cell measured twice a
minute apart differed by a fifth. Measured back to back, one 10 s medchat cell then one
10 s bare cell, a drift between the two shows up as a difference between the stacks. So a
pair is measured in ``--rounds`` slices that alternate the stacks (medchat, bare, then bare,
medchat, ...), each with its own warm-up, and each stack's slices are added up: both see
the same mix of the machine's good and bad moments.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench import cpu
from bench.environment import log
from bench.load import CellResult, ClientSpec, run_cell
from bench.pgwait import ActivitySampler


def measure_pair(
    args: argparse.Namespace,
    ports: dict[str, int],
    specs: dict[str, list[ClientSpec]],
    probe: Any,
    label: str,
    conninfo: str,
) -> tuple[CellResult, CellResult]:
    """The medchat and the bare cell of one operation and client count, interleaved."""
    rounds = max(1, args.rounds)
    slices: dict[str, list[CellResult]] = {"medchat": [], "bare": []}
    for index in range(rounds):
        order = ("medchat", "bare") if index % 2 == 0 else ("bare", "medchat")
        for stack in order:
            slices[stack].append(
                measure_cell(
                    args,
                    ports[stack],
                    specs[stack],
                    probe,
                    f"{label} {stack}",
                    conninfo,
                    seconds=args.seconds / rounds,
                )
            )
    return CellResult.merged(slices["medchat"]), CellResult.merged(slices["bare"])


def measure_cell(
    args: argparse.Namespace,
    port: int,
    specs: list[ClientSpec],
    probe: Any,
    label: str,
    conninfo: str,
    *,
    seconds: float,
) -> CellResult:
    """One cell, repeated (up to ``--attempts``) while other work took CPU during it.

    The attempt that other processes disturbed least is kept.
    """
    best: CellResult | None = None
    for _attempt in range(args.attempts):
        if probe is not None and args.wait_quiet > 0:
            waited, busy = cpu.wait_for_quiet(args.wait_quiet)
            if waited:
                log(f"waited {waited:.0f} s for other work to stop ({busy:.0%} busy)")
        with ActivitySampler(conninfo) as sampler:
            result = run_cell(
                port,
                specs,
                seconds=seconds,
                warmup=args.warmup,
                processes=args.load_procs,
                probe=probe,
            )
        result.db_activity = sampler.averages()
        other = result.other_cpu_share()
        log(
            f"{label:<12} {len(specs):>3} clients: {result.throughput:8.1f} req/s "
            f"p50 {result.percentile(50):7.2f} ms p99 {result.percentile(99):7.2f} ms"
            + (f" errors {result.errors}" if result.errors else "")
            + (f" (other work: {other:.0%} of the CPUs)" if other > 0.02 else "")
        )
        if best is None or other < best.other_cpu_share():
            best = result
        if other <= args.max_other:
            break
    assert best is not None
    return best
