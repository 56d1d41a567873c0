"""``python -m bench.audit_wal``: the WAL an audit entry costs once the audit table is large.

Every request that changes or reads content writes one audit entry, so the audit table is the
fastest-growing table and its indexes are written the most. A B-tree over a random value takes
each insert to a random leaf page; once the index is larger than the buffers, that page is
read in, and the first change to a page after a checkpoint writes the whole page to the WAL,
which the primary writes and ships to every replica ("Past one database" in bench/README.md).

This makes a fresh database with medchat's migrations, fills ``audit_entries`` with
``--entries`` rows shaped like a service's (a few hundred accounts as actors and subjects,
conversation ids as targets, a handful of actions, 16 chains), then, from a checkpoint, commits
``--inserts`` single-entry transactions into it and reads the WAL they wrote: once with the
table's indexes as migrated, once with a unique constraint on ``id`` and on ``entry_hash``
added back (what migration 0026 dropped), alternating, ``--rounds`` times. The rows are not
hashed or MAC'd (nothing verifies them here): the WAL does not depend on their values' meaning.
Not part of ``make bench``. Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

import psycopg

from bench.environment import Environment, log

#: What migration 0026 dropped, put back for the comparison.
_CONSTRAINTS = (("uq_audit_entries_id", "id"), ("uq_audit_entries_entry_hash", "entry_hash"))
_ACCOUNTS = 500
_CHAINS = 16

_FILL = """
INSERT INTO audit_entries (seq, id, at, actor_id, actor_role, action, outcome, target_type,
    target_id, subject_id, details, prev_hash, entry_hash, mac, chain, position, format)
SELECT g, gen_random_uuid(), now() - interval '1 second' * (%(n)s - g),
    ('00000000-0000-4000-8000-' || lpad((g %% %(accounts)s)::text, 12, '0'))::uuid, 'member',
    (ARRAY['message.create', 'message.read', 'conversation.read', 'auth.login'])[g %% 4 + 1],
    'success', 'conversation', gen_random_uuid()::text,
    ('00000000-0000-4000-8000-' || lpad((g %% %(accounts)s)::text, 12, '0'))::uuid, '{}',
    sha256(int8send(g - 1)), sha256(int8send(g)), sha256(int8send(-g)),
    'audit/' || (g %% %(chains)s), g / %(chains)s + 1, 3
FROM generate_series(1, %(n)s) AS g
"""
_INSERT = """
INSERT INTO audit_entries (seq, id, at, actor_id, actor_role, action, outcome, target_type,
    target_id, subject_id, details, prev_hash, entry_hash, mac, chain, position, format)
VALUES (%(seq)s, %(id)s, now(), %(actor)s, 'member', 'message.create', 'success',
    'conversation', %(target)s, %(actor)s, '{}', %(prev)s, %(hash)s, %(mac)s, %(chain)s,
    %(position)s, 3)
"""


def _account(n: int) -> uuid.UUID:
    return uuid.UUID(f"00000000-0000-4000-8000-{n % _ACCOUNTS:012d}")


def _measure(conn: psycopg.Connection, first_seq: int, inserts: int) -> tuple[float, float]:
    """(WAL bytes per entry, seconds per entry) of ``inserts`` commits from a checkpoint."""
    conn.execute("CHECKPOINT")
    start = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]  # type: ignore[index]
    began = time.perf_counter()
    for i in range(inserts):
        seq = first_seq + i
        conn.execute(
            _INSERT,
            {
                "seq": seq,
                "id": uuid.uuid4(),
                "actor": _account(seq),
                "target": str(uuid.uuid4()),
                "prev": os.urandom(32),
                "hash": os.urandom(32),
                "mac": os.urandom(32),
                "chain": f"audit/{seq % _CHAINS}",
                "position": seq // _CHAINS + 1,
            },
            prepare=True,
        )
        conn.commit()
    seconds = time.perf_counter() - began
    row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (start,))
    wal = float(row.fetchone()[0])  # type: ignore[index]
    conn.commit()
    return wal / inserts, seconds / inserts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_wal", description=__doc__)
    parser.add_argument("--entries", type=int, default=2_000_000)
    parser.add_argument("--inserts", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    env = Environment(bcrypt_rounds=4, scrypt_log2_n=10)
    try:
        env.create_database()
        env.migrate()
        with psycopg.connect(env.conninfo) as conn:
            conn.execute(_FILL, {"n": args.entries, "accounts": _ACCOUNTS, "chains": _CHAINS})
            conn.commit()
            conn.execute("ANALYZE audit_entries")
            conn.commit()
            log(f"{args.entries:,} audit entries")
            seq = args.entries + 1
            results: dict[str, list[tuple[float, float]]] = {"as migrated": [], "with the two": []}
            present = False
            for index in range(args.rounds):
                order = list(results) if index % 2 == 0 else list(reversed(results))
                for name in order:
                    if (name == "with the two") != present:
                        present = not present
                        for constraint, column in _CONSTRAINTS:
                            conn.execute(
                                f"ALTER TABLE audit_entries ADD CONSTRAINT {constraint}"
                                f" UNIQUE ({column})"
                                if present
                                else f"ALTER TABLE audit_entries DROP CONSTRAINT {constraint}"
                            )
                        conn.commit()
                    wal, seconds = _measure(conn, seq, args.inserts)
                    seq += args.inserts
                    results[name].append((wal, seconds))
                    log(f"round {index} {name}: {wal:,.0f} WAL bytes, {seconds * 1e6:.0f} us")
        print(
            f"\nAudit entries committed one at a time into a table of {args.entries:,}, "
            f"{args.inserts:,} from a checkpoint, {args.rounds} rounds"
        )
        print("| indexes | WAL bytes per entry | wall us per entry |")
        print("|:--|--:|--:|")
        for name, runs in results.items():
            wal = ", ".join(f"{w:,.0f}" for w, _ in runs)
            wall = ", ".join(f"{s * 1e6:.0f}" for _, s in runs)
            print(f"| {name} | {wal} | {wall} |")
        return 0
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main())
