"""``python -m bench.instructions``: instructions per send and per read-50, counted by valgrind.

On a shared virtual machine the CPU time of one request drifts by a third within minutes (the
same bare cell twice a minute apart; ``bench.profile`` runs back to back), which hides a
change of a tenth. The number of instructions the Python process executes for a request does
not drift: this counts them with callgrind (Debian's ``valgrind``), for medchat and for the
bare app, each through its Flask test client in one process, as the difference between a run
of ``--more`` requests and a run of ``--fewer`` (the set-up, identical in both, cancels out).
Only that process is counted: the application, Flask, SQLAlchemy, psycopg and the
cryptography, not PostgreSQL and not the kernel's side of the round trips. Not part of
``make bench``; two to three minutes on two cores (four runs per stack, two at a time).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench import inprocess
from bench.environment import REPO, Environment, log

OPERATIONS = ("send", "read")
STACKS = ("medchat", "bare")
#: Messages in the read conversation: a full page of 50 and one more.
HISTORY = 51
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def child(stack: str, operation: str, requests: int) -> None:
    """Set up one stack and run ``requests`` of one operation (run under valgrind)."""
    env = Environment(bcrypt_rounds=4, scrypt_log2_n=10)
    closers: list[Callable[[], None]] = []
    try:
        env.create_database()
        env.migrate()
        if stack == "medchat":
            calls = inprocess.medchat_requests(env, closers, history=HISTORY)[2]
        else:
            calls = inprocess.bare_requests(env, uuid.uuid4(), history=HISTORY)
        for _ in range(requests):
            assert calls[operation]().status_code == inprocess.EXPECTED[operation]
    finally:
        for close in reversed(closers):
            close()
        env.close()


def count(stack: str, operation: str, requests: int) -> int:
    """Instructions of one child run: set-up plus ``requests`` requests."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        stack,
        operation,
        str(requests),
    ]
    # A fixed hash seed: set iteration order, and so the work, is the same in every run.
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, check=False
    )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{stack} {operation} x{requests} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--fewer", type=int, default=5)
    parser.add_argument("--more", type=int, default=45)
    parser.add_argument(
        "--stacks", default=",".join(STACKS), help="comma-separated: medchat, bare (default both)"
    )
    parser.add_argument("--child", nargs=3, metavar=("STACK", "OPERATION", "REQUESTS"))
    args = parser.parse_args(argv)
    if args.child:
        stack, operation, requests = args.child
        child(stack, operation, int(requests))
        return 0
    stacks = [stack for stack in STACKS if stack in args.stacks.split(",")]
    runs = [(s, o, n) for s in stacks for o in OPERATIONS for n in (args.fewer, args.more)]
    log(f"{len(runs)} runs under callgrind, two at a time")
    with ThreadPoolExecutor(max_workers=2) as pool:
        totals = dict(zip(runs, pool.map(lambda run: count(*run), runs), strict=True))
    per_request = {
        (s, o): (totals[s, o, args.more] - totals[s, o, args.fewer]) / (args.more - args.fewer)
        for s in stacks
        for o in OPERATIONS
    }
    print("\nmillion instructions per request (the Python process; not PostgreSQL, not the kernel)")
    both = len(stacks) == len(STACKS)
    print(f"| operation | {' | '.join(stacks)} |" + (" medchat / bare |" if both else ""))
    print("|:--|" + "--:|" * (len(stacks) + both))
    for operation in OPERATIONS:
        counts = [per_request[stack, operation] for stack in stacks]
        ratio = f" {counts[0] / counts[1]:.2f} |" if both else ""
        print(f"| {operation} | " + " | ".join(f"{c / 1e6:.2f}" for c in counts) + " |" + ratio)
    return 0


if __name__ == "__main__":
    sys.exit(main())
