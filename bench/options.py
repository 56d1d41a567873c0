"""``python -m bench``'s options (bench/README.md, "Running it"): parsed, defaulted and checked.

Kept apart from ``bench/__main__.py``, which runs the cells, so that each stays readable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import pinning, proxy, scaling


def parse_args(argv: list[str] | None = None, description: str | None = None) -> argparse.Namespace:
    """The options, with the defaults ``--quick`` changes, checked against each other."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=description)
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured seconds per slice")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--quick", action="store_true", help="short smoke run (not for figures)")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (both stacks)")
    parser.add_argument("--threads", type=int, default=4, help="gthread threads per worker")
    parser.add_argument("--members", type=int, default=8, help="members sharing the clients")
    parser.add_argument("--read-history", type=int, default=200, help="messages in read chats")
    parser.add_argument("--small", type=int, default=1000, help="short conversation (page 1)")
    parser.add_argument("--large", type=int, default=None, help="long conversation (page 1)")
    parser.add_argument("--page1-samples", type=int, default=None, help="requests per chat")
    parser.add_argument("--load-procs", type=int, default=2, help="load generator processes")
    parser.add_argument(
        "--setup-costs",
        choices=("production", "low"),
        default=None,
        help="bcrypt/scrypt cost for accounts made in set-up (never in the measured loop)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=120.0,
        help="before each slice, wait up to this many seconds for other CPU use to stop",
    )
    parser.add_argument(
        "--max-other",
        type=float,
        default=0.10,
        help="repeat a slice if other processes used more than this share of the CPUs",
    )
    parser.add_argument("--attempts", type=int, default=3, help="tries per slice (see above)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="slices per cell, alternating the two stacks (bench/cells.py)",
    )
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy gunicorn logs here")
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="measure the cells at 4 workers and at the core count (bench/scaling.py)",
    )
    parser.add_argument(
        "--scaling-workers", default=None, help="worker counts for --scaling, e.g. 4,16"
    )
    parser.add_argument(
        "--flood-clients",
        type=int,
        default=32,
        help="clients of the sign-in flood beside read-50 (bench/flood.py); 0: no flood cell",
    )
    parser.add_argument("--flood-readers", type=int, default=8, help="readers in the flood cell")
    parser.add_argument(
        "--flood-via-nginx",
        action="store_true",
        help="measure the flood cell again through the deployment's nginx (bench/proxy.py)",
    )
    parser.add_argument(
        "--flood-cpus",
        default=None,
        help="run the flood's load generator on these CPUs (e.g. 1 or 8-15) and the server "
        "side on the others (bench/pinning.py)",
    )
    parser.add_argument(
        "--flood-only",
        action="store_true",
        help="measure the sign-in flood cell alone (for work on it: no other figures)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.seconds = args.seconds if args.seconds is not None else (2.0 if quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if quick else 2.0)
    args.rounds = args.rounds if args.rounds is not None else (1 if quick else 4)
    args.large = args.large if args.large is not None else (10_000 if quick else 100_000)
    args.page1_samples = args.page1_samples or (50 if quick else 200)
    args.setup_costs = args.setup_costs or ("low" if quick else "production")
    args.client_counts = sorted({int(c) for c in args.clients.split(",") if c.strip()})
    if not args.client_counts or min(args.client_counts) < 1 or max(args.client_counts) > 256:
        parser.error("--clients takes counts between 1 and 256")
    args.worker_counts = scaling.worker_counts(args) if args.scaling else [args.workers]
    if not args.worker_counts:
        parser.error("--scaling-workers takes worker counts of 1 or more")
    args.workers = args.worker_counts[0]
    if not 0 <= args.flood_clients <= 256 or not 1 <= args.flood_readers <= 256:
        parser.error("--flood-clients takes 0 to 256, --flood-readers 1 to 256")
    if args.flood_cpus is not None:
        try:
            pinning.parse(args.flood_cpus)
        except ValueError as exc:
            parser.error(str(exc))
    if args.flood_via_nginx and (not args.flood_clients or proxy.nginx_binary() is None):
        parser.error("--flood-via-nginx needs flood clients and nginx (make nginx-deps)")
    if args.flood_only and (not args.flood_clients or args.scaling):
        parser.error("--flood-only needs flood clients and a single worker count")
    return args
