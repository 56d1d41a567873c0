"""``python -m bench.rotation``: rotate the physician key over 100,000 conversations, online.

SECURITY-MODEL key hierarchy 8 promises rotation "in batches, online". This measures it on a
fresh PostgreSQL database: set-up makes the care team, 20 members and N conversations with
real wraps (every physician, archive and member wrap is a genuine HPKE seal of that
conversation's own DEK, made in two processes and loaded with ``COPY``); medchat then runs
under gunicorn while a reader process keeps asking it for conversations as a clinician who
signed in *before* the rotation, and the rotation runs through ``RotationService`` exactly as
``medchat keys rotate`` runs it (a holder's keys opened with password and TOTP, real batches).

Reported: rotation wall time (and its phases), wraps re-sealed per second, the reader's
request count, errors and p50/p99 latency before and during the rotation, and a check that
no wrap names the old key and that a holder signed in afterwards reads sampled
conversations. The database, key directory and server are removed at the end, also after
an error or Ctrl-C. See bench/ROTATION.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import cpu
from bench.environment import Environment, log
from bench.long_jobs import (
    STAFF_PASSWORD,
    ConversationKeyMaker,
    Recipients,
    Setup,
    _next_totp_step,
    _own_cpu,
    _reader,
    latency,
    login,
    made_in_two_processes,
)
from bench.seed import call

CHUNK = 5000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.rotation", description=__doc__)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="wraps per re-seal transaction")
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=2, help="gthread threads per worker")
    parser.add_argument("--baseline", type=float, default=10.0, help="seconds of reads before")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=120.0,
        help="before measuring, wait up to this many seconds for other CPU use to stop",
    )
    return parser.parse_args(argv)


# -- set-up ------------------------------------------------------------------------------------


def _make_chunk(args: tuple[str, Recipients, int, int, datetime]) -> int:
    """One worker process: ``count`` conversations with their three wraps, loaded by COPY."""
    conninfo, recipients, start, count, now = args
    from medchat.keys.sealing import CURRENT_FORMAT

    keys = ConversationKeyMaker(recipients)
    members = keys.members
    conversations, wraps = [], []
    for n in range(start, start + count):
        conversation_id = uuid.uuid4()
        member = members[n % len(members)]
        dek, commitment, tag = keys.new_key(conversation_id, member[0])
        conversations.append(
            (conversation_id, member[0], "open", 0, commitment, tag, int(CURRENT_FORMAT), now, now)
        )
        wraps.extend(keys.wraps(dek, conversation_id, member, now))
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY conversations (id, member_id, status, message_count, key_commitment, "
            "key_tag, content_version, created_at, last_message_at, status_since) FROM STDIN"
        ) as copy:
            for row in conversations:
                copy.write_row((*row, row[-1]))  # open since its last message
        with cur.copy(
            "COPY conversation_key_wraps (id, conversation_id, holder, recipient_key_id, wrap, "
            "created_at) FROM STDIN"
        ) as copy:
            for row in wraps:
                copy.write_row(row)
    return count


def make_conversations(env: Environment, recipients: Recipients, total: int) -> None:
    now = datetime.now(UTC)
    chunks = [
        (env.conninfo, recipients, start, min(CHUNK, total - start), now)
        for start in range(0, total, CHUNK)
    ]
    made_in_two_processes(_make_chunk, chunks, total, CHUNK)
    with psycopg.connect(env.conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE conversations")
        conn.execute("VACUUM ANALYZE conversation_key_wraps")


# -- the run ------------------------------------------------------------------------------------


def sign_in_starter(setup: Setup) -> Any:
    """What ``medchat keys rotate`` does first: password, TOTP, the holder's keys opened."""
    import pyotp

    from medchat.errors import InvalidMfaCode
    from medchat.identity.principal import Principal
    from medchat.services.authentication import AuthenticationService

    _, email, secret = setup.staff["starter"]
    runtime = setup.runtime
    for attempt in range(2):
        try:
            with runtime.database.transaction() as session:
                setup._context(session)
                authentication = AuthenticationService(session, runtime)
                account = authentication.check_password(email, STAFF_PASSWORD, address=None)
                authentication.check_second_factor(account, pyotp.TOTP(secret).now())
                keyring = runtime.custody(session).open_keyring(account.id, STAFF_PASSWORD)
            return Principal.in_process(account, keyring)
        except InvalidMfaCode:
            if attempt:
                raise
            _next_totp_step()
    raise AssertionError("unreachable")


def rotate(setup: Setup, actor: Any, batch: int) -> dict[str, Any]:
    """``medchat keys rotate --role physician`` after the sign-in, timed per phase."""
    from medchat.keys.rotation import RotationService
    from medchat.models import KeyRole

    runtime = setup.runtime
    marks: list[tuple[float, int, int]] = []

    def progress(done: int, total: int) -> None:
        marks.append((time.perf_counter(), done, total))
        if len(marks) % 10 == 0:
            log(f"  re-sealed {done:,} / {total:,}")

    began_at = time.time()
    started = time.perf_counter()
    result = RotationService(
        runtime, actor, KeyRole.PHYSICIAN, batch_size=batch, progress=progress
    ).run()
    finished = time.perf_counter()
    first, last = marks[0][0], marks[-1][0]
    reseal_seconds = last - started  # from the start: includes start, grants, activation
    return {
        "began_at": began_at,
        "ended_at": time.time(),
        "resealed": result.resealed,
        "retired": result.retired,
        "from_version": result.from_version,
        "to_version": result.to_version,
        "batches": len(marks),
        "wall_seconds": round(finished - started, 2),
        "until_first_batch_seconds": round(first - started, 2),
        "reseal_seconds": round(last - started, 2),
        "retire_seconds": round(finished - last, 2),
        "wraps_per_second": round(result.resealed / reseal_seconds, 1),
    }


def verify(env: Environment, port: int, setup: Setup, ids: list[str]) -> dict[str, Any]:
    """No wrap names the old key; a holder signed in now reads sampled conversations."""
    with psycopg.connect(env.conninfo) as conn:
        old_left = conn.execute(
            "SELECT count(*) FROM conversation_key_wraps w JOIN role_keys k "
            "ON k.key_id = w.recipient_key_id WHERE k.role = 'physician' AND k.version = 1"
        ).fetchone()[0]
        statuses = dict(
            conn.execute("SELECT version, status FROM role_keys WHERE role = 'physician'")
        )
    _, email, secret = setup.staff["reader"]
    token = login(port, email, secret)
    sample = random.Random(11).sample(ids, 50)
    ok = sum(
        call(port, "GET", f"/api/v1/clinician/conversations/{c}/messages", token)[0] == 200
        for c in sample
    )
    return {"old_key_wraps_left": old_left, "statuses": statuses, "sample_read_ok": f"{ok}/50"}


def _cpu_shares(
    before: dict[str, float], after: dict[str, float], rotation: float, seconds: float
) -> dict[str, float]:
    """Where the CPU went while the rotation ran; "other" is everything else on the machine
    (the reader process included), so a busy neighbour shows up instead of skewing silently."""
    used = {k: after[k] - before[k] for k in after}
    shares = {
        "rotation_process": rotation,
        "postgres": used["postgres"],
        "medchat_server": used["server"],
        "other": used["machine"] - rotation - used["postgres"] - used["server"],
        "available": seconds * (os.cpu_count() or 1),
    }
    return {k: round(v, 1) for k, v in shares.items()}


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
        log(f"set-up: 3 staff, {args.members} members; making {args.conversations:,} conversations")
        began = time.perf_counter()
        make_conversations(env, setup.recipients(members), args.conversations)
        setup_seconds = time.perf_counter() - began
        log(f"conversations ready in {setup_seconds:.0f} s")
        with psycopg.connect(env.conninfo) as conn:
            ids = [str(r[0]) for r in conn.execute("SELECT id FROM conversations LIMIT 2000")]

        server = env.start_server("medchat", "wsgi:app")
        _, email, secret = setup.staff["reader"]
        token = login(server.port, email, secret)  # a session opened before the rotation
        stop = mp.get_context("fork").Event()
        receive, send = mp.get_context("fork").Pipe(duplex=False)
        reader = mp.get_context("fork").Process(
            target=_reader, args=(server.port, token, ids, stop, send), daemon=True
        )
        actor = sign_in_starter(setup)
        waited, busy = cpu.wait_for_quiet(args.wait_quiet)
        log(f"machine {busy:.0%} busy after waiting {waited:.0f} s for quiet")
        reader.start()
        time.sleep(args.baseline)
        cpu_before, own_before = cpu.snapshot({"server": server.process.pid}), _own_cpu()
        rotation = rotate(setup, actor, args.batch)
        cpu_after, own_after = cpu.snapshot({"server": server.process.pid}), _own_cpu()
        stop.set()
        samples = receive.recv()
        reader.join(timeout=30)
        began, ended = rotation.pop("began_at"), rotation.pop("ended_at")
        before = [s for s in samples if s[0] < began]
        during = [s for s in samples if began <= s[0] <= ended]
        results = {
            "conversations": args.conversations,
            "batch": args.batch,
            "setup_seconds": round(setup_seconds, 1),
            "rotation": rotation,
            "reads_before": latency(before) if before else None,
            "reads_during": latency(during) if during else None,
            "cpu_seconds_during_rotation": _cpu_shares(
                cpu_before, cpu_after, own_after - own_before, rotation["wall_seconds"]
            ),
            "check": verify(env, server.port, setup, ids),
            "server": f"gunicorn {args.workers} workers x {args.threads} threads",
            "cpus": os.cpu_count(),
        }
        print(json.dumps(results, indent=2, default=str))
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
