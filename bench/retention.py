"""``python -m bench.retention``: destroy 100,000 expired conversations while medchat serves.

SECURITY-MODEL "Deletion, sealed archive, retention": live conversations are destroyed two
years after the question, in batches, by a job safe to run beside the service. This measures
``medchat retention run`` on a fresh PostgreSQL database: set-up makes the care team, 20
members, N expired conversations (asked 800 days ago, a few messages each, every wrap a genuine
HPKE seal of the conversation's own DEK, every body sealed under it; made in two processes and
loaded with ``COPY``) and a smaller set of fresh conversations; medchat then runs under
gunicorn while a reader process keeps asking it for fresh conversations as a clinician, and
retention runs through ``RetentionService`` exactly as the command runs it.

Reported: the run's wall time, conversations destroyed per second, where the run's time went
(finding and locking due rows, deleting, the audit append, the rest), the reader's requests,
errors and p50/p99 before and during the run, CPU shares, and checks: nothing expired is left,
every fresh conversation is intact, one ``retention.destroy`` audit entry per conversation.
Everything is removed at the end, also after an error or Ctrl-C. See bench/RETENTION.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import json
import multiprocessing as mp
import os
import pstats
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench import cpu
from bench.environment import Environment, log
from bench.long_jobs import Setup, _own_cpu, _reader, latency, login
from bench.retention_setup import analyze, make_conversations

EXPIRED_AGE = timedelta(days=800)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__)
    parser.add_argument("--conversations", type=int, default=100_000, help="expired ones")
    parser.add_argument("--messages", type=int, default=3, help="messages per conversation")
    parser.add_argument("--fresh", type=int, default=2000, help="conversations that stay")
    parser.add_argument("--batch", type=int, default=500, help="conversations per transaction")
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=2, help="gthread threads per worker")
    parser.add_argument("--baseline", type=float, default=10.0, help="seconds of reads before")
    parser.add_argument("--profile", action="store_true", help="cProfile the run (slower)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=120.0,
        help="before measuring, wait up to this many seconds for other CPU use to stop",
    )
    return parser.parse_args(argv)


# -- the run ------------------------------------------------------------------------------------


class Timers:
    """Wall time spent in the run's parts (wrapped around the functions that do them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - began
                self.calls[name] += 1

        return timed


@contextmanager
def timed_parts(timers: Timers) -> Iterator[None]:
    """Time finding/locking due rows, the deletes, and the audit append inside each commit
    (``medchat.services.shredding`` is timed as the retention module calls it)."""
    from medchat.audit import chain as audit
    from medchat.services import retention

    originals = {
        (retention, "live_batch"): retention.live_batch,
        (retention, "lock_free"): retention.lock_free,
        (retention, "destroy_unless_busy"): retention.destroy_unless_busy,
        (audit, "append_pending"): audit.append_pending,
    }
    names = {
        "live_batch": "find and lock due rows",
        "lock_free": "lock their wraps (only after a lock wait)",
        "destroy_unless_busy": "delete rows",
        "append_pending": "audit append",
    }
    try:
        for (module, attribute), function in originals.items():
            setattr(module, attribute, timers.wrap(names[attribute], function))
        yield
    finally:
        for (module, attribute), function in originals.items():
            setattr(module, attribute, function)


def run_retention(setup: Setup, batch: int, profile: bool) -> dict[str, Any]:
    """``medchat retention run --batch N`` (as the command runs it), timed per part."""
    from medchat import audit
    from medchat.services.retention import RetentionService

    marks: list[tuple[float, int, int]] = []

    def progress(done: int, total: int) -> None:
        marks.append((time.perf_counter(), done, total))
        if len(marks) % 20 == 0:
            log(f"  destroyed {done:,} / {total:,}")

    timers = Timers()
    profiler = cProfile.Profile() if profile else None
    service = RetentionService(
        setup.runtime,
        batch_size=batch,
        progress=progress,
        audit_context=audit.AuditContext(actor_role="cli", address="cli"),
    )
    began_at = time.time()
    started = time.perf_counter()
    with timed_parts(timers):
        if profiler is not None:
            profiler.enable()
        result = service.run()
        if profiler is not None:
            profiler.disable()
    finished = time.perf_counter()
    wall = finished - started
    accounted = sum(timers.seconds.values())
    batch_seconds = [b[0] - a[0] for a, b in itertools.pairwise(marks)]
    out: dict[str, Any] = {
        "began_at": began_at,
        "ended_at": time.time(),
        "destroyed": result.conversations_destroyed,
        "batches": result.batches,
        "wall_seconds": round(wall, 2),
        "until_first_batch_seconds": round(marks[0][0] - started, 2) if marks else None,
        "conversations_per_second": round(result.conversations_destroyed / wall, 1),
        "batch_seconds_first_median_last": [
            round(batch_seconds[0], 3),
            round(sorted(batch_seconds)[len(batch_seconds) // 2], 3),
            round(batch_seconds[-1], 3),
        ]
        if batch_seconds
        else None,
        "parts_seconds": {
            **{k: round(v, 2) for k, v in timers.seconds.items()},
            "rest (commit, counting, summary)": round(wall - accounted, 2),
        },
    }
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
        out["profile_top"] = text.getvalue()
    return out


def check(env: Environment, port: int, setup: Setup, fresh: list[str], expected: int) -> Any:
    with psycopg.connect(env.conninfo) as conn:

        def scalar(sql: str, *params: Any) -> Any:
            return conn.execute(sql, params).fetchone()[0]  # type: ignore[index]

        cutoff = datetime.now(UTC) - timedelta(days=730)
        result = {
            "expired_left": scalar(
                "SELECT count(*) FROM conversations WHERE created_at < %s", cutoff
            ),
            "conversations_left": scalar("SELECT count(*) FROM conversations"),
            "wraps_left": scalar("SELECT count(*) FROM conversation_key_wraps"),
            "messages_left": scalar("SELECT count(*) FROM messages"),
            "destroy_audit_entries": scalar(
                "SELECT count(*) FROM audit_entries WHERE action = 'retention.destroy'"
            ),
            "distinct_destroyed": scalar(
                "SELECT count(DISTINCT target_id) FROM audit_entries "
                "WHERE action = 'retention.destroy'"
            ),
            "expected": expected,
        }
    _, email, secret = setup.staff["reader"]
    token = login(port, email, secret)
    from bench.seed import call

    sample = fresh[:50]
    ok = sum(
        call(port, "GET", f"/api/v1/clinician/conversations/{c}/messages", token)[0] == 200
        for c in sample
    )
    result["fresh_sample_read_ok"] = f"{ok}/{len(sample)}"
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def _terminate(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    env = Environment(workers=args.workers, threads=args.threads, bcrypt_rounds=4, scrypt_log2_n=10)
    setup: Setup | None = None
    reader: Any = None
    try:
        env.create_database()
        env.migrate()
        setup = Setup(env)
        setup.staff_and_keys()
        members = setup.members(args.members)
        recipients = setup.recipients(members)
        clinician_id = setup.staff["reader"][0]
        now = datetime.now(UTC)
        log(f"making {args.conversations:,} expired and {args.fresh:,} fresh conversations")
        began = time.perf_counter()
        make_conversations(
            env, recipients, clinician_id, args.conversations, args.messages, now - EXPIRED_AGE
        )
        make_conversations(env, recipients, clinician_id, args.fresh, args.messages, now)
        analyze(env)
        setup_seconds = time.perf_counter() - began
        log(f"conversations ready in {setup_seconds:.0f} s")
        with psycopg.connect(env.conninfo) as conn:
            fresh = [
                str(r[0])
                for r in conn.execute(
                    "SELECT id FROM conversations WHERE created_at > %s", (now - timedelta(days=1),)
                )
            ]

        server = env.start_server("medchat", "wsgi:app")
        _, email, secret = setup.staff["reader"]
        token = login(server.port, email, secret)
        stop = mp.get_context("fork").Event()
        receive, send = mp.get_context("fork").Pipe(duplex=False)
        reader = mp.get_context("fork").Process(
            target=_reader, args=(server.port, token, fresh, stop, send), daemon=True
        )
        waited, busy = cpu.wait_for_quiet(args.wait_quiet)
        log(f"machine {busy:.0%} busy after waiting {waited:.0f} s for quiet")
        reader.start()
        time.sleep(args.baseline)
        cpu_before, own_before = cpu.snapshot({"server": server.process.pid}), _own_cpu()
        outcome = run_retention(setup, args.batch, args.profile)
        cpu_after, own_after = cpu.snapshot({"server": server.process.pid}), _own_cpu()
        stop.set()
        samples = receive.recv()
        reader.join(timeout=30)
        began_at, ended_at = outcome.pop("began_at"), outcome.pop("ended_at")
        profile_top = outcome.pop("profile_top", None)
        before = [s for s in samples if s[0] < began_at]
        during = [s for s in samples if began_at <= s[0] <= ended_at]
        used = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
        own = own_after - own_before
        results = {
            "conversations": args.conversations,
            "messages_each": args.messages,
            "fresh": args.fresh,
            "batch": args.batch,
            "setup_seconds": round(setup_seconds, 1),
            "retention": outcome,
            "reads_before": latency(before) if before else None,
            "reads_during": latency(during) if during else None,
            "cpu_seconds_during_run": {
                "retention_process": round(own, 1),
                "postgres": round(used["postgres"], 1),
                "medchat_server": round(used["server"], 1),
                "other": round(used["machine"] - own - used["postgres"] - used["server"], 1),
                "available": round(outcome["wall_seconds"] * (os.cpu_count() or 1), 1),
            },
            "check": check(env, server.port, setup, fresh, args.conversations),
            "server": f"gunicorn {args.workers} workers x {args.threads} threads",
            "cpus": os.cpu_count(),
        }
        print(json.dumps(results, indent=2, default=str))
        if profile_top:
            print(profile_top)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
        return 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        if reader is not None and reader.is_alive():
            reader.terminate()
        if setup is not None:
            setup.close()
        env.close()


if __name__ == "__main__":
    raise SystemExit(main())
