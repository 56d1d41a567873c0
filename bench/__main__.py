"""``python -m bench`` (``make bench``): medchat against a bare Flask + SQLAlchemy baseline.

One run: a fresh PostgreSQL database, medchat and the bare app each under gunicorn with the
same worker settings, both up at once; for each operation (send, read-50) and each client
count, the medchat and the bare cell are measured in alternating slices, so they share the
same machine state (bench/cells.py). Then page 1 of a 1,000- against a 100,000-message
conversation. Everything it made is removed at the end, also after an error or Ctrl-C. See
bench/README.md. Also: read-50 with and without a sign-in flood beside it (``bench.flood``),
and with ``--scaling`` the cells at several worker counts (``bench.scaling``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import uuid
from typing import Any

from bench import cpu, flood, options, page1, proxy, report, results, scaling
from bench.cells import measure_pair
from bench.environment import Environment, Server, log
from bench.load import CellResult, ClientSpec

#: What gunicorn logs when a worker reaches ``max_requests``.
RECYCLED = "Autorestarting worker"
REQUIRED_PATHS = (
    ("POST", "/api/v1/conversations"),
    ("POST", "/api/v1/conversations/{id}/messages"),
    ("GET", "/api/v1/conversations/{id}/messages"),
    ("PUT", "/api/v1/me/consent"),
)


def check_endpoints(server: Server) -> None:
    """Refuse early, with a clear reason, if the API under test is not there yet."""
    from bench.seed import call

    status, document = call(server.port, "GET", "/api/v1/openapi.json")
    paths = document.get("paths", {}) if status == 200 and isinstance(document, dict) else {}
    missing = []
    for method, path in REQUIRED_PATHS:
        operations = next(
            (
                ops
                for p, ops in paths.items()
                if p.replace("{conversation_id}", "{id}") == path or _same_shape(p, path)
            ),
            None,
        )
        if not operations or method.lower() not in operations:
            missing.append(f"{method} {path}")
    if missing:
        raise SystemExit("medchat does not serve these endpoints yet: " + ", ".join(missing))


def _same_shape(served: str, wanted: str) -> bool:
    a, b = served.strip("/").split("/"), wanted.strip("/").split("/")
    return len(a) == len(b) and all(
        x == y or (x.startswith("{") and y.startswith("{")) for x, y in zip(a, b, strict=True)
    )


def main(argv: list[str] | None = None) -> int:
    args = options.parse_args(argv, __doc__)

    def _terminate(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C cleans up too, even when started from a shell that ignores SIGINT for jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    costs = (12, 17) if args.setup_costs == "production" else (4, 10)
    env = Environment(
        workers=args.workers, threads=args.threads, bcrypt_rounds=costs[0], scrypt_log2_n=costs[1]
    )
    seeder = None
    started = time.time()
    try:
        from bench import bare_app, seed

        env.create_database()
        env.migrate()
        bare_app.create_schema(env.database_url)
        seeder = seed.MedchatSeeder(env)
        seeder.create_staff_and_keys()

        clients_max = max(args.client_counts)
        member_count = max(1, min(args.members, clients_max))
        per_member = [
            max(1, sum(1 for i in range(clients_max) if i % member_count == m))
            for m in range(member_count)
        ]
        members = seed.timed("accounts", lambda: seeder.create_members(member_count, per_member))

        medchat_env = proxy.TRUSTED_PROXY_ENV if args.flood_via_nginx else {}
        medchat = env.start_server("medchat", "wsgi:app", medchat_env)
        check_endpoints(medchat)
        for member in members:
            seeder.give_consent(medchat.port, member)

        def client_token(i: int) -> tuple[seed.Member, str]:
            member = members[i % member_count]
            return member, member.tokens[i // member_count]

        # One conversation per client for sends (no two clients write the same row); one
        # read conversation per member with a history of --read-history messages.
        send_chats = [
            seeder.create_conversation(medchat.port, client_token(i)[1], f"bench send {i}")
            for i in range(clients_max)
        ]
        read_chats = []
        for member in members:
            chat = seeder.create_conversation(medchat.port, member.tokens[0], "bench read")
            seeder.add_history(member, chat, args.read_history)
            read_chats.append(chat)
        owner = members[0]
        small_chat = seeder.create_conversation(medchat.port, owner.tokens[0], "bench small")
        large_chat = seeder.create_conversation(medchat.port, owner.tokens[0], "bench large")
        if args.flood_only:  # no page-1 cell: the short and long histories are not needed
            args.small = args.large = 0
        seed.timed(
            f"{args.small:,} sealed messages",
            lambda: seeder.add_history(owner, small_chat, args.small),
        )
        seed.timed(
            f"{args.large:,} sealed messages",
            lambda: seeder.add_history(owner, large_chat, args.large),
        )

        bare_send = [
            seed.bare_conversation(env, members[i % member_count].id, 1) for i in range(clients_max)
        ]
        bare_read = [seed.bare_conversation(env, m.id, args.read_history) for m in members]
        bare_small = seed.bare_conversation(env, owner.id, args.small)
        bare_large = seed.timed(
            f"{args.large:,} bare messages",
            lambda: seed.bare_conversation(env, owner.id, args.large),
        )
        seed.analyze(env)
        sanity_check(medchat, owner, read_chats[0], args.read_history)

        bare = env.start_server(
            "bare", "bench.bare_app:create_app()", {"BENCH_BARE_DATABASE_URL": env.database_url}
        )

        specs: dict[tuple[str, str], list[ClientSpec]] = {}
        specs["medchat", "send"], specs["bare", "send"] = [], []
        specs["medchat", "read"], specs["bare", "read"] = [], []
        for i in range(clients_max):
            member, token = client_token(i)
            auth = {"Authorization": f"Bearer {token}"}
            body = json.dumps({"body": seed.message_text(1000 + i)})
            m = i % member_count
            specs["medchat", "send"].append(
                ClientSpec(
                    "POST", f"/api/v1/conversations/{send_chats[i]}/messages", auth, body, 201
                )
            )
            specs["bare", "send"].append(
                ClientSpec("POST", f"/bare/conversations/{bare_send[i]}/messages", {}, body, 201)
            )
            specs["medchat", "read"].append(
                ClientSpec("GET", f"/api/v1/conversations/{read_chats[m]}/messages?limit=50", auth)
            )
            specs["bare", "read"].append(
                ClientSpec("GET", f"/bare/conversations/{bare_read[m]}/messages?limit=50", {})
            )

        servers = {"medchat": medchat, "bare": bare}
        groups = {name: server.process.pid for name, server in servers.items()}
        probe = (lambda: cpu.snapshot(groups)) if cpu.available() else None
        by_workers: dict[int, dict[str, list[tuple[CellResult, CellResult]]]] = {}
        restarts: dict[int, dict[str, int]] = {}
        flooded = flooded_via_nginx = None
        for index, workers in enumerate(args.worker_counts):
            if index:
                servers = restart_servers(env, servers, workers, medchat_env)
                groups.update({name: server.process.pid for name, server in servers.items()})
            if not args.flood_only:
                by_workers[workers] = measure_cells(args, servers, specs, probe, env)
            if index == 0 and args.flood_clients:
                readers = (specs["medchat", "read"] * args.flood_readers)[: args.flood_readers]
                flooded = flood.measure(
                    args, servers["medchat"].port, readers, env.conninfo, probe, groups
                )
                if args.flood_via_nginx:
                    with proxy.NginxProxy(servers["medchat"].port) as nginx:
                        groups["nginx"] = nginx.pid
                        flooded_via_nginx = flood.measure(
                            args, nginx.port, readers, env.conninfo, probe, groups
                        )
                        del groups["nginx"]
            restarts[workers] = {name: s.count_in_log(RECYCLED) for name, s in servers.items()}
        medchat, bare = servers["medchat"], servers["bare"]
        if args.flood_only and flooded is not None:
            print()
            print(flood.table(flooded))
            if flooded_via_nginx is not None:
                print()
                print(flood.table(flooded_via_nginx, via="the deployment's nginx"))
            return 0

        owner_auth = {"Authorization": f"Bearer {owner.tokens[0]}"}
        page = {"small": args.small, "large": args.large, "samples": args.page1_samples}
        page["medchat"] = page1.measure(
            medchat.port,
            (
                f"/api/v1/conversations/{small_chat}/messages?limit=50",
                f"/api/v1/conversations/{large_chat}/messages?limit=50",
            ),
            owner_auth,
            args.page1_samples,
        )
        page["bare"] = page1.measure(
            bare.port,
            (
                f"/bare/conversations/{bare_small}/messages?limit=50",
                f"/bare/conversations/{bare_large}/messages?limit=50",
            ),
            {},
            args.page1_samples,
        )
        print()
        for workers, worker_cells in by_workers.items():
            print(results.describe(args, env, workers, restarts[workers]))
            for op in ("send", "read"):
                print()
                print(report.operation_table(op, worker_cells[op]))
            if probe is not None:
                print()
                print(report.cpu_table(worker_cells))
            print()
            print(report.activity_table(worker_cells))
            print()
        if args.scaling:
            print(scaling.table(by_workers))
            print()
        if flooded is not None:
            print(flood.table(flooded))
        if flooded_via_nginx is not None:
            print()
            print(flood.table(flooded_via_nginx, via="the deployment's nginx"))
            print()
        print(report.page1_table(page))
        print()
        if args.json:
            report.write_json(
                args.json,
                results.document(
                    args, env, by_workers, page, restarts, started, flooded, flooded_via_nginx
                ),
            )
            log(f"results written to {args.json}")
        return 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        if seeder is not None:
            seeder.close()
        env.close(keep_logs=args.keep_logs)


def measure_cells(
    args: argparse.Namespace,
    servers: dict[str, Server],
    specs: dict[tuple[str, str], list[ClientSpec]],
    probe: Any,
    env: Environment,
) -> dict[str, list[tuple[CellResult, CellResult]]]:
    """Every (operation, client count) pair of cells against the servers as they run now."""
    ports = {name: server.port for name, server in servers.items()}
    cells: dict[str, list[tuple[CellResult, CellResult]]] = {"send": [], "read": []}
    for op in ("send", "read"):
        for n in args.client_counts:
            cell_specs = {stack: specs[stack, op][:n] for stack in ports}
            before = {name: s.count_in_log(RECYCLED) for name, s in servers.items()}
            pair = measure_pair(args, ports, cell_specs, probe, op, env.conninfo)
            for name, cell in zip(("medchat", "bare"), pair, strict=True):
                cell.recycles = servers[name].count_in_log(RECYCLED) - before[name]
            cells[op].append(pair)
    return cells


def restart_servers(
    env: Environment, servers: dict[str, Server], workers: int, medchat_env: dict[str, str]
) -> dict[str, Server]:
    """Both stacks again with ``workers`` workers (the same database, data and ports' roles)."""
    apps = {
        "medchat": ("wsgi:app", medchat_env),
        "bare": ("bench.bare_app:create_app()", {"BENCH_BARE_DATABASE_URL": env.database_url}),
    }
    for server in servers.values():
        env.stop_server(server)
    env.workers = workers
    return {
        name: env.start_server(f"{name}-w{workers}", app, extra)
        for name, (app, extra) in apps.items()
    }


def sanity_check(server: Server, owner: Any, chat: uuid.UUID, history: int) -> None:
    """Page 1 of a seeded chat decrypts to the bodies that were sealed, newest first."""
    from bench.seed import call, message_text

    status, data = call(
        server.port, "GET", f"/api/v1/conversations/{chat}/messages?limit=50", owner.tokens[0]
    )
    if status != 200:
        raise RuntimeError(f"reading a seeded conversation failed: {status} {data}")
    items = data["items"]
    if len(items) != 50 or items[0]["body"] != message_text(history):
        raise RuntimeError("a seeded conversation does not read back as written")


if __name__ == "__main__":
    sys.exit(main())
