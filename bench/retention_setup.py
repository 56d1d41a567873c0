"""``bench.retention``'s set-up: expired and fresh conversations made in two processes, by COPY.

Every wrap is a genuine HPKE seal of the conversation's own DEK and every body is sealed under
it, so that retention destroys what a live database holds (bench/RETENTION.md).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import psycopg

from bench.environment import Environment
from bench.long_jobs import ConversationKeyMaker, Recipients, made_in_two_processes
from bench.seed import message_text

CHUNK = 5000


def _make_chunk(args: tuple[str, Recipients, uuid.UUID, int, int, int, datetime]) -> int:
    """One worker process: ``count`` conversations asked at ``asked_at`` (a millisecond apart),
    their three wraps and ``messages`` sealed messages each, loaded by COPY."""
    conninfo, recipients, clinician_id, start, count, messages, asked_at = args
    from medchat.keys.sealing import CURRENT_FORMAT, ContentKey, MessageLabel

    keys = ConversationKeyMaker(recipients)
    members = keys.members
    conversations, wraps, bodies = [], [], []
    for n in range(start, start + count):
        conversation_id = uuid.uuid4()
        member = members[n % len(members)]
        member_id = member[0]
        at = asked_at + timedelta(milliseconds=n)
        dek, commitment, tag = keys.new_key(conversation_id, member_id)
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
        wraps.extend(keys.wraps(dek, conversation_id, member, at))
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
    made_in_two_processes(_make_chunk, chunks, total, CHUNK)


def analyze(env: Environment) -> None:
    with psycopg.connect(env.conninfo, autocommit=True) as conn:
        for table in ("conversations", "conversation_key_wraps", "messages"):
            conn.execute(f"VACUUM ANALYZE {table}")
