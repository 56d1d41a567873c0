"""``bench.retention``'s set-up: expired and fresh conversations made in two processes, by COPY.

Every wrap is a genuine HPKE seal of the conversation's own DEK and every body is sealed under
it, so that retention destroys what a live database holds (bench/RETENTION.md).
"""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import psycopg

from bench.environment import Environment, log
from bench.long_jobs import Recipients, _default_signals
from bench.seed import message_text

CHUNK = 5000


def _make_chunk(args: tuple[str, Recipients, uuid.UUID, int, int, int, datetime]) -> int:
    """One worker process: ``count`` conversations asked at ``asked_at`` (a millisecond apart),
    their three wraps and ``messages`` sealed messages each, loaded by COPY."""
    conninfo, recipients, clinician_id, start, count, messages, asked_at = args
    from access_control import crypto, hybrid_kem
    from access_control.key_directory import load_server_keys
    from medchat.archive.gate import GATED, ArchiveGate
    from medchat.keys.sealing import CURRENT_FORMAT, ContentKey, MessageLabel
    from medchat.keys.wrap_binding import key_set_tag, seal_wrap

    server_keys = load_server_keys(Path(recipients.key_dir), create_missing=False)
    integrity = server_keys.integrity
    # A live conversation's archive wrap is gated, as ConversationKeys.add_wrap stores it.
    gate = ArchiveGate(server_keys.archive_gate)
    physician_id, physician_key_id, physician_public = recipients.physician
    archive_id, archive_key_id, archive_public = recipients.archive
    physician = hybrid_kem.load_public_key(physician_public)
    archive = hybrid_kem.load_public_key(archive_public)
    members = [(m, k, hybrid_kem.load_public_key(p)) for m, k, p in recipients.members]
    conversations, wraps, bodies = [], [], []
    for n in range(start, start + count):
        conversation_id = uuid.uuid4()
        member_id, member_key_id, member_key = members[n % len(members)]
        at = asked_at + timedelta(milliseconds=n)
        dek = crypto.generate_key()
        commitment = crypto.key_commitment(dek, conversation_id)
        tag = key_set_tag(
            integrity,
            SimpleNamespace(  # type: ignore[arg-type]
                id=conversation_id,
                member_id=member_id,
                key_commitment=commitment,
                content_version=CURRENT_FORMAT,
            ),
        )
        key = ContentKey(dek, conversation_id, CURRENT_FORMAT)
        subject = key.seal_subject(f"Question #{n}")
        conversations.append(
            (
                conversation_id,
                member_id,
                "answered",
                subject,
                messages,
                commitment,
                tag,
                int(CURRENT_FORMAT),
                at,
                at,
            )
        )
        for holder, recipient, recipient_id, key_id in (
            ("physician", physician, physician_id, physician_key_id),
            ("archive", archive, archive_id, archive_key_id),
            ("member", member_key, member_id, member_key_id),
        ):
            wrap = seal_wrap(
                recipient,
                dek,
                holder=holder,
                recipient_id=recipient_id,
                conversation_id=conversation_id,
            )
            if holder == "archive":
                holder = GATED
                wrap = gate.close(wrap, conversation_id=conversation_id, recipient_key_id=key_id)
            wraps.append((uuid.uuid4(), conversation_id, holder, key_id, wrap, at))
        for seq in range(1, messages + 1):
            message_id = uuid.uuid4()
            clinician = seq % 2 == 0
            role = "clinician" if clinician else "member"
            author = clinician_id if clinician else member_id
            bodies.append(
                (
                    message_id,
                    conversation_id,
                    seq,
                    role,
                    author,
                    key.seal_body(
                        MessageLabel(message_id, seq, role, author), message_text(n + seq)
                    ),
                    at + timedelta(seconds=seq),
                )
            )
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        for statement, rows in (
            (
                "COPY conversations (id, member_id, status, subject_ciphertext, message_count, "
                "key_commitment, key_tag, content_version, created_at, last_message_at, "
                "status_since) FROM STDIN",
                [(*row, row[-1]) for row in conversations],  # in its status since then
            ),
            (
                "COPY conversation_key_wraps (id, conversation_id, holder, recipient_key_id, "
                "wrap, created_at) FROM STDIN",
                wraps,
            ),
            (
                "COPY messages (id, conversation_id, seq, author_role, author_id, "
                "body_ciphertext, created_at) FROM STDIN",
                bodies,
            ),
        ):
            with cur.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
    return count


def make_conversations(
    env: Environment,
    recipients: Recipients,
    clinician_id: uuid.UUID,
    total: int,
    messages: int,
    asked_at: datetime,
) -> None:
    chunks = [
        (
            env.conninfo,
            recipients,
            clinician_id,
            start,
            min(CHUNK, total - start),
            messages,
            asked_at,
        )
        for start in range(0, total, CHUNK)
    ]
    made = 0
    started = time.perf_counter()
    with mp.get_context("fork").Pool(2, initializer=_default_signals) as pool:
        for count in pool.imap_unordered(_make_chunk, chunks):
            made += count
            if made % (CHUNK * 4) == 0 or made == total:
                log(f"  {made:,} conversations ({time.perf_counter() - started:.0f} s)")


def analyze(env: Environment) -> None:
    with psycopg.connect(env.conninfo, autocommit=True) as conn:
        for table in ("conversations", "conversation_key_wraps", "messages"):
            conn.execute(f"VACUUM ANALYZE {table}")
