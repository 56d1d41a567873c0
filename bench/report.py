"""Tables for people and one JSON document for machines."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.load import CellResult, percentile

__all__ = ["percentile"]  # re-exported: other bench tools take it from here

TARGETS = {"send": 0.6, "read": 0.5}
PAGE1_TARGET = 1.2
TITLES = {
    "send": "send a message: POST /api/v1/conversations/{id}/messages",
    "read": "read the latest 50: GET /api/v1/conversations/{id}/messages?limit=50",
}


def _fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def cell_ratio(medchat: CellResult, bare: CellResult) -> float:
    return medchat.throughput / bare.throughput if bare.throughput else math.nan


def operation_table(op: str, rows: list[tuple[CellResult, CellResult]]) -> str:
    target = TARGETS[op]
    lines = [
        f"{TITLES[op]}  (target: medchat >= {target:.1f} x bare throughput)",
        "| clients | medchat req/s | p50 ms | p99 ms | bare req/s | p50 ms | p99 ms "
        "| ratio | result |",
        "|--------:|--------------:|-------:|-------:|-----------:|-------:|-------:"
        "|------:|:------:|",
    ]
    for medchat, bare in rows:
        ratio = cell_ratio(medchat, bare)
        verdict = "PASS" if ratio >= target else "FAIL"
        lines.append(
            f"| {medchat.clients:>7} | {_fmt(medchat.throughput):>13} "
            f"| {_fmt(medchat.percentile(50), 2):>6} | {_fmt(medchat.percentile(99), 2):>6} "
            f"| {_fmt(bare.throughput):>10} | {_fmt(bare.percentile(50), 2):>6} "
            f"| {_fmt(bare.percentile(99), 2):>6} | {_fmt(ratio, 2):>5} | {verdict:^6} |"
        )
    problems = [
        f"{name} at {cell.clients} clients: {cell.errors} errors {cell.error_samples[:2]}"
        for medchat, bare in rows
        for name, cell in (("medchat", medchat), ("bare", bare))
        if cell.errors
    ]
    if problems:
        lines.append("errors: " + "; ".join(problems))
    return "\n".join(lines)


def cpu_table(cells: dict[str, list[tuple[CellResult, CellResult]]]) -> str:
    """CPU milliseconds per request by process group, and how busy the machine was."""
    cpus = os.cpu_count() or 1
    lines = [
        "CPU per request (ms) in the measured window: app = the gunicorn server under test, "
        "pg = PostgreSQL, load = the load generator; busy = share of all "
        f"{cpus} CPUs in use (whole machine); other = CPU % used by anything else; "
        "rec = workers recycled (max_requests) during the cell",
        "| operation | clients | medchat app | pg | load | busy % | other % | rec "
        "| bare app | pg | load | busy % | other % | rec |",
        "|:----------|--------:|------:|------:|------:|------:|------:|----:"
        "|------:|------:|------:|------:|------:|----:|",
    ]
    for op, rows in cells.items():
        for medchat, bare in rows:
            parts = []
            for stack, cell in (("medchat", medchat), ("bare", bare)):
                per = cell.cpu_ms_per_request()
                used = cell.cpu_seconds
                busy = used.get("machine", math.nan) / cell.seconds / cpus * 100
                other = cell.other_cpu_share() * 100
                app, pg, load = (per.get(k, math.nan) for k in (stack, "postgres", "load"))
                parts.append(
                    f"{_fmt(app, 2)} | {_fmt(pg, 2)} | {_fmt(load, 2)} | {_fmt(busy, 0)} "
                    f"| {_fmt(other, 0)} | {cell.recycles}"
                )
            lines.append(f"| {op:<9} | {medchat.clients:>7} | {parts[0]} | {parts[1]} |")
    return "\n".join(lines)


def activity_table(cells: dict[str, list[tuple[CellResult, CellResult]]]) -> str:
    """Mean database connections per state over each cell (``bench.pgwait``)."""
    lines = [
        "database connections, mean over the cell: run = executing a statement, "
        "lock = waiting for a row lock, idle-tx = idle inside an open transaction "
        "(the application is between statements)",
        "| operation | clients | medchat run | lock | idle-tx | bare run | lock | idle-tx |",
        "|:----------|--------:|------:|------:|------:|------:|------:|------:|",
    ]
    for op, rows in cells.items():
        for medchat, bare in rows:
            parts = []
            for cell in (medchat, bare):
                a = cell.db_activity
                parts.append(
                    f"{_fmt(a.get('running', 0.0), 2)} | {_fmt(a.get('waiting_on_lock', 0.0), 2)}"
                    f" | {_fmt(a.get('idle_in_transaction', 0.0), 2)}"
                )
            lines.append(f"| {op:<9} | {medchat.clients:>7} | {parts[0]} | {parts[1]} |")
    return "\n".join(lines)


def page1_table(page1: dict[str, Any]) -> str:
    small, large = page1["small"], page1["large"]
    lines = [
        f"page 1 (limit=50, newest first) of a {small:,}-message vs a {large:,}-message "
        f"conversation, one client, {page1['samples']} requests each, interleaved "
        f"(target: medchat ratio <= {PAGE1_TARGET})",
        f"| stack   | p50 ms @ {small:,} | p50 ms @ {large:,} | p99 @ {small:,} | p99 @ {large:,} "
        "| ratio (p50) | result |",
        "|:--------|------:|------:|------:|------:|------:|:------:|",
    ]
    for stack in ("medchat", "bare"):
        item = page1.get(stack)
        if not item:
            continue
        ratio = item["ratio_p50"]
        verdict = ("PASS" if ratio <= PAGE1_TARGET else "FAIL") if stack == "medchat" else "-"
        lines.append(
            f"| {stack:<7} | {_fmt(item['small_p50_ms'], 2)} | {_fmt(item['large_p50_ms'], 2)} "
            f"| {_fmt(item['small_p99_ms'], 2)} | {_fmt(item['large_p99_ms'], 2)} "
            f"| {_fmt(ratio, 3)} | {verdict:^6} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
            check=False,
        ).stdout.strip()
    return info


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
