"""``python -m bench.versus OTHER_CHECKOUT``: this checkout's server against another's, same load.

The main benchmark compares medchat with the bare app; this compares medchat with itself at
another commit (``git worktree add /tmp/before <commit>``, then ``ln -s $PWD/.venv
/tmp/before/.venv``), which is how a change to the request path is judged. Both servers run
with their own ``deploy/gunicorn.conf.py`` on one database made by this checkout's migrations
(so the two must share the schema), and are measured in short slices that alternate which goes
first, so the machine's drift (a third within minutes here) falls on both alike. Prints CPU per
request of each server and of PostgreSQL, per slice and over all slices. Not part of
``make bench``; about two minutes with the defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import cpu, seed
from bench.environment import REPO, Environment, log
from bench.load import ClientSpec, run_cell

CLIENTS = 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.versus", description=__doc__)
    parser.add_argument("other", type=Path, help="the other checkout (with .venv linked in)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    other = args.other.resolve()
    if not (other / "wsgi.py").exists():
        parser.error(f"{other} is not a checkout of this project")
    env = Environment(workers=args.workers, threads=4, bcrypt_rounds=4, scrypt_log2_n=10)
    seeder = None
    try:
        env.create_database()
        env.migrate()
        seeder = seed.MedchatSeeder(env)
        seeder.create_staff_and_keys()
        (member,) = seeder.create_members(1, [CLIENTS])
        this = env.start_server("this", "wsgi:app")
        seeder.give_consent(this.port, member)
        chats = [
            seeder.create_conversation(this.port, member.tokens[i], f"send {i}")
            for i in range(CLIENTS)
        ]
        read_chat = seeder.create_conversation(this.port, member.tokens[0], "read")
        seeder.add_history(member, read_chat, 200)
        seed.analyze(env)
        servers = {"this": this, "other": env.start_server("other", "wsgi:app", checkout=other)}
        body = json.dumps({"body": seed.message_text(1000)})
        auth = [{"Authorization": f"Bearer {token}"} for token in member.tokens]
        specs = {
            "send": [
                ClientSpec("POST", f"/api/v1/conversations/{chats[i]}/messages", auth[i], body, 201)
                for i in range(CLIENTS)
            ],
            "read": [
                ClientSpec("GET", f"/api/v1/conversations/{read_chat}/messages?limit=50", auth[i])
                for i in range(CLIENTS)
            ],
        }
        groups = {name: server.process.pid for name, server in servers.items()}
        # (server CPU s, PostgreSQL CPU s, requests) per (server, operation)
        totals = {(name, op): [0.0, 0.0, 0] for name in servers for op in specs}
        for index in range(args.rounds):
            order = ("other", "this") if index % 2 == 0 else ("this", "other")
            for op, clients in specs.items():
                for name in order:
                    result = run_cell(
                        servers[name].port,
                        clients,
                        seconds=args.seconds,
                        warmup=0.5,
                        processes=2,
                        probe=lambda: cpu.snapshot(groups),
                    )
                    if result.errors:
                        raise RuntimeError(f"{name} {op}: {result.errors} errors")
                    total = totals[name, op]
                    total[0] += result.cpu_seconds[name]
                    total[1] += result.cpu_seconds["postgres"]
                    total[2] += result.requests
                    per = result.cpu_ms_per_request()
                    log(
                        f"round {index} {op:<4} {name:<5} {result.throughput:7.1f} req/s, "
                        f"CPU per request: server {per[name]:.2f} ms, PostgreSQL "
                        f"{per['postgres']:.2f} ms"
                    )
        print(f"\nCPU per request over {args.rounds} rounds (this: {REPO}, other: {other})")
        print("| operation | server: this | other | this / other | PostgreSQL: this | other |")
        print("|:--|--:|--:|--:|--:|--:|")
        for op in specs:
            (a, pa, na), (b, pb, nb) = totals["this", op], totals["other", op]
            mine, theirs = 1000 * a / na, 1000 * b / nb
            print(
                f"| {op} | {mine:.2f} ms | {theirs:.2f} ms | {mine / theirs:.2f} | "
                f"{1000 * pa / na:.2f} ms | {1000 * pb / nb:.2f} ms |"
            )
        return 0
    finally:
        if seeder is not None:
            seeder.close()
        env.close()


if __name__ == "__main__":
    sys.exit(main())
