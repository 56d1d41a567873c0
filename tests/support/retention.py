"""Retention runs, the canary conversations they are tried on, and what the database still
stores of a conversation (read as raw rows)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, inspect, or_, select, text

from medchat.db import Base
from medchat.identity.principal import Principal
from medchat.models import (
    ConversationKeyWrap,
    ConversationRead,
    IdempotencyRecord,
    Message,
    PersonalKey,
    RewrapRequest,
)
from medchat.services.attachments import upload_scope
from medchat.services.context import ServiceContext
from medchat.services.conversations import message_scope
from medchat.services.member_conversations import START_SCOPE
from medchat.services.retention import RetentionResult, RetentionService
from tests.support.conversations import add_attachment, start_conversation


#: Every table with rows that belong to one conversation, and the column naming it.
def _per_conversation() -> dict[str, str]:
    """Every table whose rows belong to a conversation, from the metadata: a table added
    later with a foreign key to ``conversations`` is counted (and must be destroyed) by
    itself, without anyone remembering this list."""
    tables = {"conversations": "id"}
    for table in Base.metadata.sorted_tables:
        for key in table.foreign_keys:
            if key.column.table.name == "conversations" and table.name != "conversations":
                tables[table.name] = key.parent.name
    return tables


PER_CONVERSATION = _per_conversation()
#: Nothing left in any table that belongs to a conversation (derived from the metadata).
GONE = dict.fromkeys([*PER_CONVERSATION, "idempotency_records"], 0)

#: The canary content of a question: looked for in the audit trail, which must hold none of it.
SUBJECT = "Retention canary subject R2"
BODIES = ["Retention canary question R2: my ankle", "Retention canary follow-up R2"]
FILE_NAME = "retention-canary-R2.pdf"
#: The default live and archive retention periods.
LIVE = timedelta(days=730)
ARCHIVE = timedelta(days=3650)


def question(runtime: ServiceContext, member: Principal, n: int = 0) -> uuid.UUID:
    """A conversation asked now (the clock's time): subject, two messages, one attachment."""
    started = start_conversation(
        runtime, member, subject=f"{SUBJECT} #{n}", bodies=[f"{b} #{n}" for b in BODIES]
    )
    add_attachment(
        runtime,
        started.id,
        started.message_ids[0],
        started.dek,
        filename=FILE_NAME,
        content_type="application/pdf",
        data=b"%PDF-1.7\nretention canary\n%%EOF\n",
    )
    return started.id


def exists(runtime: ServiceContext, conversation_id: uuid.UUID) -> bool:
    return stored_rows(runtime, conversation_id)["conversations"] == 1


def run(runtime: ServiceContext, as_of: datetime | None = None, **kwargs: Any) -> RetentionResult:
    """A retention run as of ``as_of``; for a real run the test's clock first moves there
    (a run never looks ahead of the clock: ``EarlyDestruction``)."""
    dry_run = kwargs.pop("dry_run", False)
    if as_of is not None and not dry_run:
        move_clock_to(runtime, as_of)
    return RetentionService(runtime, **kwargs).run(as_of, dry_run=dry_run)


def move_clock_to(runtime: ServiceContext, moment: datetime) -> None:
    """Let time pass on the test's clock up to ``moment`` (it never goes back)."""
    clock = runtime.clock
    if moment.tzinfo is not None and moment > clock.now():
        clock.set(moment)  # type: ignore[attr-defined]


def stored_rows(runtime: ServiceContext, conversation_id: uuid.UUID) -> dict[str, int]:
    """Rows of each table that still belong to the conversation (idempotency by scope)."""
    tables = Base.metadata.tables
    counts = {}
    with runtime.database.engine.connect() as connection:
        for name, column in PER_CONVERSATION.items():
            table = tables[name]
            counts[name] = connection.execute(
                select(func.count()).select_from(table).where(table.c[column] == conversation_id)
            ).scalar_one()
        idempotency = tables["idempotency_records"]
        counts["idempotency_records"] = connection.execute(
            select(func.count())
            .select_from(idempotency)
            .where(
                or_(
                    idempotency.c.scope.in_(
                        [message_scope(conversation_id), upload_scope(conversation_id)]
                    ),
                    (idempotency.c.scope == START_SCOPE)
                    & (idempotency.c.resource_id == conversation_id),
                )
            )
        ).scalar_one()
    return counts


def stored_bytes(runtime: ServiceContext, conversation_id: uuid.UUID) -> list[bytes]:
    """Every ciphertext and wrap of the conversation as stored now (to look for later)."""
    found: list[bytes] = []
    tables = Base.metadata.tables
    with runtime.database.engine.connect() as connection:
        for name, column in PER_CONVERSATION.items():
            table = tables[name]
            for row in connection.execute(select(table).where(table.c[column] == conversation_id)):
                found += [
                    bytes(v) for v in row if isinstance(v, bytes | memoryview) and len(v) > 32
                ]
    return found


def every_stored_value(runtime: ServiceContext) -> bytes:
    """All values of all rows, bytes raw (what a dump of the live tables holds)."""
    chunks = []
    with runtime.database.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                chunks += [bytes(v) for v in row if isinstance(v, bytes | memoryview)]
    return b"\n".join(chunks)


def add_live_traces(
    runtime: ServiceContext, conversation_id: uuid.UUID, member: Principal, clinician_id: uuid.UUID
) -> None:
    """A read marker, a queued re-wrap and the idempotency records of a start, a send and an
    upload: everything besides content that a live conversation leaves behind."""
    now = runtime.clock.now()
    with runtime.database.transaction() as session:
        key_id = session.scalar(
            select(PersonalKey.id).where(
                PersonalKey.account_id == member.id, PersonalKey.retired_at.is_(None)
            )
        )
        first_message = session.scalar(
            select(Message.id).where(Message.conversation_id == conversation_id).limit(1)
        )
        session.add(
            ConversationRead(
                conversation_id=conversation_id,
                account_id=clinician_id,
                last_read_seq=1,
                read_at=now,
            )
        )
        session.add(
            RewrapRequest(
                conversation_id=conversation_id,
                member_id=member.id,
                personal_key_id=key_id,
                created_at=now,
            )
        )
        for n, (scope, resource) in enumerate(
            [
                (START_SCOPE, conversation_id),
                (message_scope(conversation_id), first_message),
                (upload_scope(conversation_id), uuid.uuid4()),
            ]
        ):
            session.add(
                IdempotencyRecord(
                    account_id=member.id,
                    key=f"key-{conversation_id}-{n}",
                    scope=scope,
                    request_hash=bytes(32),
                    resource_id=resource,
                    created_at=now,
                )
            )


def wrap_holders(runtime: ServiceContext, conversation_id: uuid.UUID) -> list[str]:
    with runtime.database.transaction() as session:
        return sorted(
            session.scalars(
                select(ConversationKeyWrap.holder).where(
                    ConversationKeyWrap.conversation_id == conversation_id
                )
            )
        )


def table_snapshot(
    runtime: ServiceContext, *, leave_out: tuple[str, ...] = ()
) -> dict[str, list[Any]]:
    """Every row of every table, sorted (to prove a run changed nothing)."""
    snapshot = {}
    with runtime.database.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if table.name in leave_out:
                continue
            rows = [tuple(row) for row in connection.execute(select(table))]
            snapshot[table.name] = sorted(rows, key=repr)
    return snapshot
