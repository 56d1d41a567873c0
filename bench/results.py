"""What a run of ``python -m bench`` prints about its settings and writes with ``--json``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench import flood, report
from bench.environment import Environment
from bench.load import CellResult


def describe(
    args: argparse.Namespace, env: Environment, workers: int, restarts: dict[str, int]
) -> str:
    info = report.machine()
    return (
        f"machine: {info.get('cpus')} CPUs ({info.get('cpu_model', '?')}), "
        f"Python {info['python']}, PostgreSQL on 127.0.0.1 (same machine)\n"
        f"gunicorn (deploy/gunicorn.conf.py): {workers} workers x {env.threads} threads "
        f"for both stacks; {args.seconds:g} s measured per cell in {args.rounds} slices "
        f"alternating the stacks, each after {args.warmup:g} s warm-up; "
        f"{args.load_procs} load processes; worker recycles (max_requests): "
        f"medchat {restarts['medchat']}, bare {restarts['bare']}"
    )


def document(
    args: argparse.Namespace,
    env: Environment,
    by_workers: dict[int, dict[str, list[tuple[CellResult, CellResult]]]],
    page: dict[str, Any],
    restarts: dict[int, dict[str, int]],
    started: float,
    flooded: flood.FloodResult | None,
    flooded_via_nginx: flood.FloodResult | None = None,
) -> dict[str, Any]:
    """Every figure; ``operations`` are the first worker count's (the only one without
    ``--scaling``), ``by_workers`` holds each count's."""
    first = args.worker_counts[0]
    out: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": report.machine(),
        "settings": {
            "seconds": args.seconds,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "clients": args.client_counts,
            "workers": first,
            "worker_counts": args.worker_counts,
            "threads": env.threads,
            "members": args.members,
            "read_history": args.read_history,
            "load_processes": args.load_procs,
            "setup_costs": args.setup_costs,
            "quick": args.quick,
            "flood_clients": args.flood_clients,
            "flood_readers": args.flood_readers,
            "flood_cpus": args.flood_cpus,
        },
        "worker_recycles": restarts[first],
        "operations": _operations(by_workers[first]),
        "page1": page,
        "flood": flooded.summary() if flooded is not None else None,
        "flood_via_nginx": flooded_via_nginx.summary() if flooded_via_nginx is not None else None,
    }
    if args.scaling:
        out["by_workers"] = {
            str(workers): {"operations": _operations(cells), "worker_recycles": restarts[workers]}
            for workers, cells in by_workers.items()
        }
    out["page1"]["pass"] = page["medchat"]["ratio_p50"] <= report.PAGE1_TARGET
    return out


def _operations(cells: dict[str, list[tuple[CellResult, CellResult]]]) -> dict[str, Any]:
    return {
        op: {
            "target_ratio": report.TARGETS[op],
            "cells": [
                {
                    "clients": medchat.clients,
                    "medchat": medchat.summary(),
                    "bare": bare.summary(),
                    "ratio": round(report.cell_ratio(medchat, bare), 3),
                    "pass": report.cell_ratio(medchat, bare) >= report.TARGETS[op],
                }
                for medchat, bare in rows
            ],
        }
        for op, rows in cells.items()
    }
