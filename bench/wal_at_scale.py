"""``python -m bench.wal_at_scale``: the WAL a send's tables cost once they are large.

Every request that changes or reads content writes an audit entry, and every send a message,
so ``audit_entries`` and ``messages`` are the tables that grow without bound and whose indexes
are written the most. A B-tree over a random value takes each insert to a random leaf page;
once the index is larger than the buffers, that page is read in, and the first change to a
page after a checkpoint writes the whole page to the WAL, which the primary writes and ships to
every replica ("Past one database" in bench/README.md). And every send updates its
conversation's row: an update that changes an indexed column gets a new entry in each of the
table's indexes, one that changes none stays in the heap page (a HOT update).

On a fresh database with medchat's migrations, each measurement fills a table with
``--entries`` rows shaped like a service's, then, from a checkpoint, commits ``--inserts``
single-row transactions and reads the WAL they wrote, alternating the two variants,
``--rounds`` times:

- ``audit_entries`` as migrated, and with a unique constraint on ``id`` and on ``entry_hash``
  added back (what migration 0026 dropped). Rows: 500 accounts as actors and subjects, a new
  conversation id as the target of each, 16 chains; not hashed or MAC'd (nothing verifies
  them here, and the WAL does not depend on what the values mean).
- ``messages`` (a table made ``LIKE messages INCLUDING ALL``: its columns and indexes, not its
  foreign keys), rows over 100,000 conversations, new ones sent to 2,000 of them: ids made by
  ``medchat.db.time_ordered_id`` (what a send makes) and random ones (``uuid4``, before).
- ``conversations`` (``LIKE conversations INCLUDING ALL``), ``--entries`` / 2 rows, a quarter
  of them open, each commit the update a send makes of one of 2,000 open ones (its count and
  time; the status kept): with the clinicians' index on (status, status_since, id), which
  leaves that update heap-only, and on (status, last_message_at, id) (before migration 0027),
  which gives it a new entry in each live index.

Not part of ``make bench``. Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.environment import Environment, log
from medchat.db import time_ordered_id

#: What migration 0026 dropped, put back for the comparison.
_CONSTRAINTS = (("uq_audit_entries_id", "id"), ("uq_audit_entries_entry_hash", "entry_hash"))
_ACCOUNTS = 500
_CHAINS = 16
_CONVERSATIONS = 100_000
_ACTIVE = 2_000

_FILL_AUDIT = """
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
_INSERT_AUDIT = """
INSERT INTO audit_entries (seq, id, at, actor_id, actor_role, action, outcome, target_type,
    target_id, subject_id, details, prev_hash, entry_hash, mac, chain, position, format)
VALUES (%(seq)s, %(id)s, now(), %(actor)s, 'member', 'message.create', 'success',
    'conversation', %(target)s, %(actor)s, '{}', %(prev)s, %(hash)s, %(mac)s, %(chain)s,
    %(position)s, 3)
"""
_FILL_MESSAGES = """
INSERT INTO scale_messages (id, conversation_id, seq, author_role, author_id, body_ciphertext,
    created_at)
SELECT gen_random_uuid(), c.id, s.seq, 'member', c.member, decode(repeat('ab', 300), 'hex'),
    now()
FROM (SELECT gen_random_uuid() AS id, gen_random_uuid() AS member
      FROM generate_series(1, %(conversations)s)) AS c,
     generate_series(1, %(per)s) AS s(seq)
"""
_INSERT_MESSAGE = """
INSERT INTO scale_messages (id, conversation_id, seq, author_role, author_id, body_ciphertext,
    created_at)
VALUES (%(id)s, %(conversation)s, %(seq)s, 'member', %(author)s, %(body)s, now())
"""


def _account(n: int) -> uuid.UUID:
    return uuid.UUID(f"00000000-0000-4000-8000-{n % _ACCOUNTS:012d}")


def _wal_per_commit(
    conn: psycopg.Connection[Any], inserts: int, statement: str, params: Callable[[], Any]
) -> tuple[float, float]:
    """(WAL bytes, wall seconds) per commit of ``inserts`` one-row commits from a checkpoint,
    each row's parameters from ``params``."""
    conn.execute("CHECKPOINT")
    start = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]  # type: ignore[index]
    began = time.perf_counter()
    for _ in range(inserts):
        conn.execute(statement, params(), prepare=True)
        conn.commit()
    seconds = time.perf_counter() - began
    row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (start,))
    wal = float(row.fetchone()[0])  # type: ignore[index]
    conn.commit()
    return wal / inserts, seconds / inserts


def _audit(conn: psycopg.Connection[Any], args: argparse.Namespace) -> dict[str, list[Any]]:
    conn.execute(_FILL_AUDIT, {"n": args.entries, "accounts": _ACCOUNTS, "chains": _CHAINS})
    conn.execute("ANALYZE audit_entries")
    conn.commit()
    log(f"{args.entries:,} audit entries")
    seqs = itertools.count(args.entries + 1)

    def entry() -> dict[str, Any]:
        seq = next(seqs)
        return {
            "seq": seq,
            "id": uuid.uuid4(),
            "actor": _account(seq),
            "target": str(uuid.uuid4()),
            "prev": os.urandom(32),
            "hash": os.urandom(32),
            "mac": os.urandom(32),
            "chain": f"audit/{seq % _CHAINS}",
            "position": seq // _CHAINS + 1,
        }

    results: dict[str, list[Any]] = {"as migrated": [], "with the two constraints": []}
    present = False
    for index in range(args.rounds):
        for name in list(results) if index % 2 == 0 else list(reversed(results)):
            if (name != "as migrated") != present:
                present = not present
                for constraint, column in _CONSTRAINTS:
                    conn.execute(
                        f"ALTER TABLE audit_entries ADD CONSTRAINT {constraint} UNIQUE ({column})"
                        if present
                        else f"ALTER TABLE audit_entries DROP CONSTRAINT {constraint}"
                    )
                conn.commit()
            results[name].append(_wal_per_commit(conn, args.inserts, _INSERT_AUDIT, entry))
            log(f"audit_entries round {index} {name}: {results[name][-1][0]:,.0f} WAL bytes")
    return results


def _messages(conn: psycopg.Connection[Any], args: argparse.Namespace) -> dict[str, list[Any]]:
    conn.execute("CREATE TABLE scale_messages (LIKE messages INCLUDING ALL)")
    per = max(1, args.entries // _CONVERSATIONS)
    conn.execute(_FILL_MESSAGES, {"conversations": _CONVERSATIONS, "per": per})
    conn.execute("ANALYZE scale_messages")
    active = conn.execute(
        "SELECT DISTINCT conversation_id, author_id FROM scale_messages LIMIT %s", (_ACTIVE,)
    ).fetchall()
    conn.commit()
    log(f"{_CONVERSATIONS * per:,} messages")
    counts = {conversation: per for conversation, _ in active}
    chooser = random.Random(15)
    makers: dict[str, Callable[[], uuid.UUID]] = {
        "time-ordered ids (now)": lambda: time_ordered_id(datetime.now(UTC)),
        "random ids (before)": uuid.uuid4,
    }
    results: dict[str, list[Any]] = {name: [] for name in makers}
    for index in range(args.rounds):
        for name in list(makers) if index % 2 == 0 else list(reversed(makers)):
            make = makers[name]

            def message(make: Callable[[], uuid.UUID] = make) -> dict[str, Any]:
                conversation, author = chooser.choice(active)
                counts[conversation] += 1
                return {
                    "id": make(),
                    "conversation": conversation,
                    "seq": counts[conversation],
                    "author": author,
                    "body": os.urandom(300),
                }

            results[name].append(_wal_per_commit(conn, args.inserts, _INSERT_MESSAGE, message))
            log(f"messages round {index} {name}: {results[name][-1][0]:,.0f} WAL bytes")
    return results


_FILL_CONVERSATIONS = """
INSERT INTO scale_conversations (id, member_id, status, subject_ciphertext, message_count,
    key_commitment, key_tag, content_version, created_at, last_message_at, status_since,
    urgent, notice_version)
SELECT gen_random_uuid(), gen_random_uuid(),
    (ARRAY['open', 'answered', 'closed', 'closed'])[g %% 4 + 1], decode(repeat('ab', 60), 'hex'),
    10, sha256(int8send(g)), sha256(int8send(-g)), 2, now() - interval '1 second' * (%(n)s - g),
    now() - interval '1 second' * (%(n)s - g), now() - interval '1 second' * (%(n)s - g), false,
    '1'
FROM generate_series(1, %(n)s) AS g
"""
#: What a send's statement does to its conversation (``medchat.services.message_append``).
_SEND_UPDATE = """
UPDATE scale_conversations SET message_count = message_count + 1, last_message_at = now(),
    status = 'open',
    status_since = CASE WHEN status = 'open' THEN status_since ELSE now() END
WHERE id = %(id)s
"""
_QUEUE_INDEXES = {
    "status_since index (now)": "(status, status_since, id)",
    "last_message_at index (before)": "(status, last_message_at, id)",
}


def _conversations(conn: psycopg.Connection[Any], args: argparse.Namespace) -> dict[str, list[Any]]:
    conn.execute("CREATE TABLE scale_conversations (LIKE conversations INCLUDING ALL)")
    conn.execute("DROP INDEX scale_conversations_status_status_since_id_idx")
    conn.execute("ALTER TABLE scale_conversations SET (fillfactor = 90)")  # as migrated (0027)
    conn.execute(_FILL_CONVERSATIONS, {"n": args.entries // 2})
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE scale_conversations")
    conn.autocommit = False
    rows = conn.execute(
        "SELECT id FROM scale_conversations WHERE status = 'open' ORDER BY random() LIMIT %s",
        (_ACTIVE,),
    )
    active = [row[0] for row in rows.fetchall()]
    conn.commit()
    log(f"{args.entries // 2:,} conversations")
    chooser = random.Random(27)
    results: dict[str, list[Any]] = {name: [] for name in _QUEUE_INDEXES}
    for index in range(args.rounds):
        for name in list(results) if index % 2 == 0 else list(reversed(results)):
            conn.execute("DROP INDEX IF EXISTS scale_queue")
            conn.execute(f"CREATE INDEX scale_queue ON scale_conversations {_QUEUE_INDEXES[name]}")
            conn.commit()
            results[name].append(
                _wal_per_commit(
                    conn, args.inserts, _SEND_UPDATE, lambda: {"id": chooser.choice(active)}
                )
            )
            log(f"conversations round {index} {name}: {results[name][-1][0]:,.0f} WAL bytes")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wal_at_scale", description=__doc__)
    parser.add_argument("--entries", type=int, default=2_000_000, help="rows in each table")
    parser.add_argument("--inserts", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    env = Environment(bcrypt_rounds=4, scrypt_log2_n=10)
    try:
        env.create_database()
        env.migrate()
        with psycopg.connect(env.conninfo) as conn:
            tables = {
                "audit_entries": _audit(conn, args),
                "messages": _messages(conn, args),
                "conversations": _conversations(conn, args),
            }
        print(
            f"\nOne-row commits into a table of {args.entries:,} rows (conversations: "
            f"{args.entries // 2:,}), {args.inserts:,} from a checkpoint, {args.rounds} rounds "
            "alternating"
        )
        print("| table | variant | WAL bytes per row written | wall us per commit |")
        print("|:--|:--|--:|--:|")
        for table, results in tables.items():
            for name, runs in results.items():
                wal = ", ".join(f"{w:,.0f}" for w, _ in runs)
                wall = ", ".join(f"{s * 1e6:.0f}" for _, s in runs)
                print(f"| {table} | {name} | {wal} | {wall} |")
        return 0
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main())
