"""``python -m bench.profile``: where one send and one read-50 spend their time, in-process.

Not part of ``make bench``. Builds the same kind of database as the benchmark (a fresh
PostgreSQL database, enrolled staff, role keys, a member with consent, a conversation with a
history), then drives medchat's Flask app through its test client, one request at a time:
first unprofiled (wall and CPU time per request), then under ``cProfile``. It prints the
time per request of the steps that matter (token lookup, session keyring, DEK unwrap,
decryption, serialisation, commit and audit append, ...) and the top functions by own time.
cProfile inflates Python-heavy code relative to C, so read the shares, not the absolutes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench import inprocess
from bench.environment import Environment, log

#: (file suffix, function name, label): the steps of a request worth naming.
STEPS = (
    ("flask/app.py", "wsgi_app", "whole request in Flask"),
    ("medchat/web/bearer.py", "load_principal", "bearer token lookup (token + account row)"),
    ("medchat/identity/principal.py", "keyring", "session keyring (HKDF, AES-GCM, key expand)"),
    ("access_control/hybrid_kem.py", "load_private_key", "  X-Wing private key from seed"),
    ("medchat/services/conversation_access.py", "load", "conversation row check (ORM)"),
    ("medchat/services/conversation_access.py", "check", "conversation row check (columns)"),
    ("medchat/keys/conversation_keys.py", "open_key", "DEK: wraps query + HPKE unwrap + checks"),
    ("access_control/hybrid_kem.py", "unwrap_key", "  HPKE unwrap (ML-KEM-768 + X25519)"),
    ("medchat/services/consent.py", "require_current", "consent check"),
    ("medchat/services/conversations.py", "lock_for_write", "SELECT ... FOR UPDATE"),
    ("medchat/services/conversations.py", "append_message", "append (UPDATE RETURNING, insert)"),
    ("medchat/services/message_views.py", "message_page", "page query + views"),
    ("medchat/services/message_views.py", "message_views", "  decrypt + attachments + names"),
    ("medchat/keys/sealing.py", "open_body", "  AES-GCM open per body"),
    ("marshmallow/schema.py", "dump", "response serialisation (marshmallow)"),
    ("medchat/web/transaction.py", "_finish", "commit (incl. audit append)"),
    ("medchat/audit/chain.py", "append_pending", "  audit chain append (head lock, hash, MAC)"),
    ("sqlalchemy/orm/session.py", "execute", "SQLAlchemy Session.execute (all)"),
    ("psycopg/cursor.py", "execute", "psycopg execute (all, incl. server time)"),
)


def step_times(stats: pstats.Stats, requests: int) -> list[tuple[str, float, int]]:
    """Cumulative ms per request and calls per request of each named step."""
    table = stats.stats  # type: ignore[attr-defined]
    out = []
    for suffix, name, label in STEPS:
        total, calls = 0.0, 0
        for (filename, _line, function), (_cc, nc, _tt, ct, _callers) in table.items():
            if function == name and filename.replace("\\", "/").endswith(suffix):
                total += ct
                calls += nc
        if calls:
            out.append((label, total * 1000 / requests, round(calls / requests)))
    return out


#: (module, attribute path, label): timed in-process without cProfile. The CPU time of the
#: calling thread is what counts (the run is CPU-bound; waits for PostgreSQL are not app CPU,
#: and other work on the machine inflates wall time far more than thread CPU time).
SECTIONS = (
    ("medchat.web.bearer", "load_principal", "bearer token lookup (token + account row)"),
    ("medchat.identity.principal", "Principal.keyring", "session keyring opened from the token"),
    ("access_control.keyring", "load_private_key", "  X-Wing private key from its seed"),
    ("medchat.services.conversation_access", "ConversationAccess.load", "row check (ORM)"),
    ("medchat.services.conversation_access", "ConversationAccess.check", "row check (columns)"),
    (
        "medchat.keys.conversation_keys",
        "ConversationKeys.open_key",
        "DEK: wraps query + HPKE + tags",
    ),
    ("medchat.keys.conversation_keys", "hybrid_kem.unwrap_key", "  HPKE unwrap"),
    ("medchat.services.consent", "ConsentService.require_current", "consent check"),
    ("medchat.services.conversations", "ConversationService.lock_for_write", "SELECT FOR UPDATE"),
    ("medchat.services.conversations", "ConversationService.append_message", "append + flush"),
    ("medchat.services.message_views", "ConversationReader.message_page", "message page"),
    ("medchat.services.message_views", "ConversationReader.message_views", "  views"),
    ("medchat.keys.sealing", "ContentKey.open_body", "    AES-GCM opens"),
    ("marshmallow", "Schema.dump", "marshmallow dump"),
    ("medchat.web.transaction", "_finish", "commit / rollback"),
    ("medchat.audit.chain", "append_pending", "  audit chain append (inside commit)"),
)


class SectionTimer:
    """Wraps functions in place to add up their thread CPU and wall time (outermost calls)."""

    def __init__(self) -> None:
        import threading

        self.totals: dict[str, float] = {}
        self.walls: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.local = threading.local()
        self.installed: list[str] = []

    def _wrap(self, label: str, function: Any) -> Any:
        import functools

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(self.local, label, 0)
            setattr(self.local, label, depth + 1)
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                setattr(self.local, label, depth)
                if depth == 0:
                    self.totals[label] = self.totals.get(label, 0.0) + time.thread_time() - cpu
                    self.walls[label] = self.walls.get(label, 0.0) + time.perf_counter() - start
                    self.calls[label] = self.calls.get(label, 0) + 1

        return timed

    def install(self) -> None:
        """Patch the names where callers look them up (missing ones are skipped)."""
        import importlib

        for module_name, path, label in SECTIONS:
            try:
                owner: Any = importlib.import_module(module_name)
                *parents, name = path.split(".")
                for part in parents:
                    owner = getattr(owner, part)
                current = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
            except (ImportError, AttributeError, KeyError):
                continue
            if isinstance(current, property):
                setattr(owner, name, property(self._wrap(label, current.fget)))
            else:
                setattr(owner, name, self._wrap(label, current))
            self.installed.append(label)

    def reset(self) -> None:
        self.totals.clear()
        self.walls.clear()
        self.calls.clear()

    def report(self, requests: int) -> list[str]:
        return [
            f"{label:<46} {self.totals[label] * 1000 / requests:>7.3f} ms CPU"
            f" {self.walls[label] * 1000 / requests:>7.3f} ms wall"
            f" {self.calls[label] / requests:>5.1f} calls"
            for label in self.installed
            if label in self.totals
        ]


class StatementLog:
    """Every SQL statement the app's engine runs, with its time (cursor execute to return)."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.entries: list[tuple[str, float]] = []
        self.recording = False
        self._started: dict[int, float] = {}

        @event.listens_for(engine, "before_cursor_execute")
        def _before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            self._started[id(cursor)] = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def _after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            began = self._started.pop(id(cursor), None)
            if self.recording and began is not None:
                text = " ".join(statement.split())
                self.entries.append((text, (time.perf_counter() - began) * 1000))

    def summary(self, requests: int) -> list[str]:
        totals: dict[str, list[float]] = {}
        for text, ms in self.entries:
            totals.setdefault(_shorten(text), []).append(ms)
        rows = sorted(totals.items(), key=lambda item: -sum(item[1]))
        return [
            f"{len(times) / requests:>5.1f} x {sum(times) / requests:>6.3f} ms  {text}"
            for text, times in rows
        ]


def _outer_words(statement: str) -> list[str]:
    """The statement's words outside parentheses (subqueries and CTE bodies left out)."""
    depth, out = 0, []
    for char in statement:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out).split()


def _shorten(statement: str) -> str:
    words = _outer_words(statement)
    head = words[0].upper() if words else ""
    if head == "SELECT" and "FROM" in words:
        tail = words[words.index("FROM") :]
        extra = " FOR UPDATE" if "FOR UPDATE" in statement else ""
        return "SELECT ... " + " ".join(tail[:2]) + extra + (" (join)" if "JOIN" in tail else "")
    if head == "WITH":
        # WITH name AS (...) <the statement>: name the statement that follows.
        rest = [w for w in words[3:] if w.upper() != "AS"]
        return "WITH " + words[1] + " ... " + " ".join(rest[:3])[:60]
    return " ".join(words[:3])[:70]


def bare_in_process(env: Environment, member_id: uuid.UUID, requests: int, history: int) -> str:
    """The same two requests on the bare baseline, through its test client (for scale)."""
    calls = inprocess.bare_requests(env, member_id, history=history)
    lines = ["\n== bare baseline, same test client, one thread:"]
    for op, call in calls.items():
        for _ in range(30):
            call()
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(requests):
            call()
        lines.append(
            f"  {op}: {(time.process_time() - cpu) * 1000 / requests:.2f} ms CPU, "
            f"{(time.perf_counter() - start) * 1000 / requests:.2f} ms wall per request"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--history", type=int, default=200)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--stats-dir",
        help="also write each operation's cProfile statistics there (send.pstats, read.pstats), "
        "to read by cumulative time with pstats or snakeviz",
    )
    args = parser.parse_args()

    env = Environment(bcrypt_rounds=4, scrypt_log2_n=10)
    closers: list[Callable[[], None]] = []
    try:
        env.create_database()
        env.migrate()
        sections = SectionTimer()
        # Before the app exists: it registers some of these functions.
        app, member, operations = inprocess.medchat_requests(
            env, closers, history=args.history, before_app=sections.install
        )
        statements = StatementLog(app.extensions["medchat"].database.engine)
        for op, call in operations.items():
            for _ in range(30):
                assert call().status_code == inprocess.EXPECTED[op]
            sections.reset()
            start_time, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(args.requests):
                call()
            wall = (time.perf_counter() - start_time) * 1000 / args.requests
            cpu = (time.process_time() - start_cpu) * 1000 / args.requests
            timed = sections.report(args.requests)
            statements.entries.clear()
            statements.recording = True
            for _ in range(50):
                call()
            statements.recording = False
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.requests):
                call()
            profiler.disable()
            stats = pstats.Stats(profiler)
            if args.stats_dir:
                os.makedirs(args.stats_dir, exist_ok=True)
                stats.dump_stats(os.path.join(args.stats_dir, f"{op}.pstats"))
            print(
                f"\n== {op}: {cpu:.2f} ms CPU, {wall:.2f} ms wall per request, unprofiled "
                "(test client, one thread)"
            )
            print("Sections per request, unprofiled (indented = part of the line above):")
            for line in timed:
                print("  " + line)
            per_request = len(statements.entries) / 50
            print(f"SQL statements per request ({per_request:.0f}; count x ms each, unprofiled):")
            for line in statements.summary(50):
                print("  " + line)
            print(f"{'step':<52} {'ms/req (profiled)':>18} {'calls/req':>10}")
            for label, ms, calls in step_times(stats, args.requests):
                print(f"{label:<52} {ms:>18.3f} {calls:>10}")
            buffer = io.StringIO()
            pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(args.top)
            print(f"\n-- {op}: top {args.top} functions by own time ({args.requests} requests)")
            print("\n".join(buffer.getvalue().splitlines()[6:]))
        print(bare_in_process(env, member.id, args.requests, args.history))
    finally:
        for close in reversed(closers):
            close()
        env.close()
        log("cleaned up")


if __name__ == "__main__":
    main()
