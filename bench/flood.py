"""The sign-in flood cell: read-50 latency with and without a flood of sign-ins beside it.

Issue 15's target: read-50 p99 under a flood of 32 signing-in clients stays within 3 times its
p99 without one. Each flood client signs in again as soon as it is answered, every time as a
new unknown address (``flood-<unique>@example.org``, a wrong password) from a new loopback
source address (``bench.load``, ``vary``): the costliest kind of flood, since each attempt
that is admitted costs a full scrypt and bcrypt (the unknown account's dummy check), no
failure budget or per-address limit ever stops it, and each answer is audited. The server
runs with production password costs whatever ``--setup-costs`` says.

Measured in ``--rounds`` slices that alternate quiet and flooded (quiet, flooded, flooded,
quiet, ...), as the stacks alternate in ``bench.cells``. In a flooded slice the flood starts
with the readers and ends a second after them, so it covers their whole measured window.

On one machine the flood's own load generator takes cores from the server it floods (the
table's CPU line says how much): ``--flood-via-nginx`` measures the cell again through the
deployment's nginx (``bench.proxy``), and ``--flood-cpus`` keeps the flood's generator on CPUs
of its own, the server side on the others (``bench.pinning``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import threading
from dataclasses import dataclass
from typing import Any

from bench import pinning
from bench.environment import log
from bench.load import CellResult, ClientSpec, run_cell
from bench.pgwait import ActivitySampler

TARGET_P99_RATIO = 3.0
SIGN_IN = "/api/v1/auth/token"


def flood_specs(clients: int) -> list[ClientSpec]:
    body = json.dumps({"email": "flood-{n}@example.org", "password": "not-the-password-{n}"})
    return [ClientSpec("POST", SIGN_IN, {}, body, expect=401, vary=True)] * clients


@dataclass
class FloodResult:
    readers: int
    flood_clients: int
    quiet: CellResult
    flooded: CellResult
    flood: CellResult

    @property
    def p99_ratio(self) -> float:
        quiet = self.quiet.percentile(99)
        return self.flooded.percentile(99) / quiet if quiet else math.nan

    def summary(self) -> dict[str, Any]:
        return {
            "readers": self.readers,
            "flood_clients": self.flood_clients,
            "quiet": self.quiet.summary(),
            "flooded": self.flooded.summary(),
            "flood": self.flood.summary(),
            "p99_ratio": round(self.p99_ratio, 3),
            "target_p99_ratio": TARGET_P99_RATIO,
            "pass": self.p99_ratio <= TARGET_P99_RATIO,
        }


def measure(
    args: argparse.Namespace,
    port: int,
    readers: list[ClientSpec],
    conninfo: str,
    probe: Any = None,
    groups: dict[str, int] | None = None,
) -> FloodResult:
    """Readers alone and readers under the flood, in alternating slices; with
    ``--flood-cpus``, the flood's load generator on those CPUs and the rest (the process
    groups in ``groups``, PostgreSQL, the readers) on the others (``bench.pinning``)."""
    if not args.flood_cpus:
        return _measure(args, port, readers, conninfo, probe, None)
    flood_cpus = pinning.parse(args.flood_cpus)
    with pinning.server_side_on((groups or {}).values(), pinning.all_cpus() - flood_cpus):
        return _measure(args, port, readers, conninfo, probe, flood_cpus)


def _measure(
    args: argparse.Namespace,
    port: int,
    readers: list[ClientSpec],
    conninfo: str,
    probe: Any,
    flood_cpus: set[int] | None,
) -> FloodResult:
    rounds = max(1, args.rounds)
    seconds = args.seconds / rounds
    flood = flood_specs(args.flood_clients)
    parts: dict[str, list[CellResult]] = {"quiet": [], "flooded": [], "flood": []}
    for index in range(rounds):
        order = ("quiet", "flooded") if index % 2 == 0 else ("flooded", "quiet")
        for kind in order:
            box: dict[str, CellResult] = {}
            flood_thread = None
            if kind == "flooded":
                flood_thread = threading.Thread(
                    target=_run_flood,
                    args=(box, port, flood, seconds + 1.0, args, flood_cpus),
                    daemon=True,
                )
                flood_thread.start()
            with ActivitySampler(conninfo) as sampler:
                cell = run_cell(
                    port,
                    readers,
                    seconds=seconds,
                    warmup=args.warmup,
                    processes=args.load_procs,
                    probe=probe,
                )
            cell.db_activity = sampler.averages()
            if flood_thread is not None:
                flood_thread.join(timeout=args.warmup + seconds + 300)
                parts["flood"].append(box["flood"])
            parts[kind].append(cell)
            log(
                f"read-50 {kind:<8} {len(readers):>3} readers: {cell.throughput:8.1f} req/s "
                f"p50 {cell.percentile(50):7.2f} ms p99 {cell.percentile(99):7.2f} ms"
                + (f"; flood answers {box['flood'].statuses}" if "flood" in box else "")
            )
    return FloodResult(
        readers=len(readers),
        flood_clients=len(flood),
        quiet=CellResult.merged(parts["quiet"]),
        flooded=CellResult.merged(parts["flooded"]),
        flood=CellResult.merged(parts["flood"]),
    )


def _run_flood(
    box: dict[str, CellResult],
    port: int,
    flood: list[ClientSpec],
    seconds: float,
    args: argparse.Namespace,
    cpus: set[int] | None,
) -> None:
    box["flood"] = run_cell(
        port, flood, seconds=seconds, warmup=args.warmup, processes=args.load_procs, cpus=cpus
    )


def table(result: FloodResult, via: str | None = None) -> str:
    quiet, flooded, flood = result.quiet, result.flooded, result.flood
    verdict = "PASS" if result.p99_ratio <= TARGET_P99_RATIO else "FAIL"
    answered = sum(flood.statuses.values())
    per_status = ", ".join(
        f"{status}: {n / flood.seconds:.1f}/s" for status, n in sorted(flood.statuses.items())
    )
    hashed = flood.statuses.get("401", 0)
    lines = [
        f"read-50 under a sign-in flood: {result.readers} readers, with and without "
        f"{result.flood_clients} clients signing in as new unknown addresses "
        f"(target: p99 with <= {TARGET_P99_RATIO:g} x p99 without)"
        + (f", every request through {via}" if via else ""),
        "| readers | quiet req/s | p50 ms | p99 ms | flooded req/s | p50 ms | p99 ms "
        "| p99 ratio | result |",
        "|--------:|------:|------:|------:|------:|------:|------:|------:|:------:|",
        f"| {result.readers:>7} | {quiet.throughput:.1f} | {quiet.percentile(50):.2f} "
        f"| {quiet.percentile(99):.2f} | {flooded.throughput:.1f} "
        f"| {flooded.percentile(50):.2f} | {flooded.percentile(99):.2f} "
        f"| {result.p99_ratio:.2f} | {verdict:^6} |",
        f"flood: {answered / flood.seconds if flood.seconds else 0:.1f} answers/s ({per_status}); "
        f"{hashed / flood.seconds if flood.seconds else 0:.1f}/s went through a full password "
        f"check (401), p50 {flood.percentile(50):.1f} ms, p99 {flood.percentile(99):.1f} ms",
    ]
    lines.append(cpu_line(quiet, flooded, flood))
    lock = flooded.db_activity.get("waiting_on_lock", 0.0)
    quiet_lock = quiet.db_activity.get("waiting_on_lock", 0.0)
    lines.append(f"connections waiting on a lock: quiet {quiet_lock:.2f}, flooded {lock:.2f}")
    return "\n".join(lines)


def cpu_line(quiet: CellResult, flooded: CellResult, flood: CellResult) -> str:
    """Where the machine's CPU went, quiet and flooded: the flood's own load generator shares
    the cores here, as an attacker's machines would not (bench/README.md)."""
    cores = os.cpu_count() or 1

    def share(cell: CellResult, name: str) -> float:
        seconds = cell.cpu_seconds.get(name, 0.0)
        return 100 * seconds / (cell.seconds * cores) if cell.seconds else math.nan

    parts = []
    for label, cell in (("quiet", quiet), ("flooded", flooded)):
        parts.append(
            f"{label}: server {share(cell, 'medchat'):.0f} %, PostgreSQL "
            f"{share(cell, 'postgres'):.0f} %, readers' load generator {share(cell, 'load'):.0f} %"
            + (f", nginx {share(cell, 'nginx'):.0f} %" if "nginx" in cell.cpu_seconds else "")
            + (f", flood's load generator {share(flood, 'load'):.0f} %" if cell is flooded else "")
        )
    return f"CPU, share of the {cores} cores: " + "; ".join(parts)
