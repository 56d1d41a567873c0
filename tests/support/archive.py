"""Sealing conversations and tampering with what the archive keeps (raw SQL, as an attacker)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from access_control.roles import Role
from medchat.archive import ledger
from medchat.db import Base
from medchat.identity.principal import Principal
from medchat.models import ArchiveRecord, KeyRole
from medchat.services.archive_reading import ArchivedConversation
from medchat.services.context import ServiceContext
from medchat.services.deletion import DeletionService
from medchat.services.retrieval import RetrievalService
from medchat.services.role_keys import RoleKeyService
from tests.support.accounts import Person, make_member, make_staff
from tests.support.conversations import add_attachment, start_conversation
from tests.support.messaging import care_team
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql


def archive_colleague(runtime: ServiceContext, holder: Person) -> Person:
    """A second compliance officer, granted the archive key by ``holder`` (so they may approve
    a retrieval); the key reaches their sessions opened after this."""
    colleague = make_staff(runtime, Role.COMPLIANCE)
    actor = sign_in(runtime, holder).principal
    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).grant(actor, KeyRole.ARCHIVE, colleague.id)
    return colleague


def seal(runtime: ServiceContext, member: Principal, conversation_id: uuid.UUID) -> ArchiveRecord:
    """The member's deletion request, through the service; returns the new ledger record."""
    with runtime.database.transaction() as session:
        DeletionService(session, runtime).delete_own(member, conversation_id)
        return session.scalars(
            select(ArchiveRecord).where(ArchiveRecord.conversation_id == conversation_id)
        ).one()


def retrieve(
    runtime: ServiceContext,
    asker: Person,
    approver: Person,
    conversation_id: uuid.UUID,
    justification: str = "Court order 2027/31 about these exchanges with the member.",
) -> ArchivedConversation:
    """A sealed record opened through four eyes, via the service: ``asker`` requests,
    ``approver`` (who must hold the archive key) approves, ``asker`` opens; each signed in now."""
    asking = sign_in(runtime, asker).principal
    approving = sign_in(runtime, approver).principal
    with runtime.database.transaction() as session:
        record_id = session.scalars(
            select(ArchiveRecord.id).where(ArchiveRecord.conversation_id == conversation_id)
        ).one()
        retrieval = RetrievalService(session, runtime).request(asking, record_id, justification)
    with runtime.database.transaction() as session:
        RetrievalService(session, runtime).approve(approving, retrieval.id)
    with runtime.database.transaction() as session:
        return RetrievalService(session, runtime).content(asking, retrieval.id)


def verify_ledger(runtime: ServiceContext, **kwargs: Any) -> ledger.LedgerReport:
    """``medchat archive verify`` with the runtime's pinned key."""
    signer = runtime.archive_signer
    with runtime.database.transaction() as session:
        return ledger.verify(session, signer.public_key, signer.head_mac_key, **kwargs)


def records(runtime: ServiceContext) -> list[ArchiveRecord]:
    with runtime.database.transaction() as session:
        rows = list(session.scalars(select(ArchiveRecord).order_by(ArchiveRecord.seq)))
        session.expunge_all()
    return rows


def read_column(runtime: ServiceContext, table: str, column: str, row_id: uuid.UUID) -> Any:
    columns = Base.metadata.tables[table].c
    with runtime.database.engine.connect() as connection:
        return connection.execute(select(columns[column]).where(columns.id == row_id)).scalar_one()


def flip_byte(
    runtime: ServiceContext, table: str, column: str, row_id: uuid.UUID, position: int = -1
) -> None:
    """Change one byte of a stored bytes column, as someone who can write the database."""
    value = bytearray(read_column(runtime, table, column, row_id))
    value[position] ^= 0x01
    execute_sql(
        runtime,
        f"UPDATE {table} SET {column} = :value WHERE id = :id",
        value=bytes(value),
        id=row_id,
    )


SUBJECT = "Sealed subject: chest pain after meals"
BODIES = ["First message about the pain", "Second message: it started on Tuesday"]


@dataclass(frozen=True)
class Sealed:
    """A sealed conversation: what it held and its ledger record."""

    conversation_id: uuid.UUID
    message_ids: tuple[uuid.UUID, ...]
    attachment_id: uuid.UUID
    record: ArchiveRecord


def seal_new(runtime: ServiceContext, member: Principal, n: int = 0) -> Sealed:
    """A conversation of ``member`` with two messages and an attachment, then sealed."""
    started = start_conversation(
        runtime, member, subject=f"{SUBJECT} #{n}", bodies=[f"{b} #{n}" for b in BODIES]
    )
    attachment_id = add_attachment(
        runtime,
        started.id,
        started.message_ids[0],
        started.dek,
        filename=f"scan-{n}.pdf",
        content_type="application/pdf",
        data=b"%PDF-1.7\nscan " + str(n).encode() + b"\n%%EOF\n",
    )
    return Sealed(started.id, started.message_ids, attachment_id, seal(runtime, member, started.id))


def sealed_history(runtime: ServiceContext, count: int = 3) -> list[Sealed]:
    """A care team and a member with ``count`` sealed conversations: records 1 to ``count``."""
    care_team(runtime)
    member = sign_in(runtime, make_member(runtime)).principal
    return [seal_new(runtime, member, n) for n in range(count)]


def assert_names(report: ledger.LedgerReport, sealed: Sealed, *words: str) -> None:
    """The walk failed at ``sealed``'s record, for a reason holding each of ``words``."""
    assert not report.ok
    assert report.first_bad == sealed.record.id, report
    assert report.first_bad_seq == sealed.record.seq
    for word in words:
        assert word in (report.reason or ""), report.reason


def plant_past_head(runtime: ServiceContext) -> uuid.UUID:
    """A row inserted after the last record with SQL, no head update (that needs the key)."""
    last = records(runtime)[-1]
    planted = {
        **{name: getattr(last, name) for name in ledger.RecordFields.__dataclass_fields__},
        "id": uuid.uuid4(),
        "seq": last.seq + 1,
        "prev_hash": last.record_hash,
        "record_hash": secrets.token_bytes(32),
        "signature": last.signature,
        "signing_key_id": last.signing_key_id,
    }
    with runtime.database.engine.begin() as connection:
        connection.execute(insert(ArchiveRecord), [planted])
    return planted["id"]  # type: ignore[no-any-return]


def append_signed(runtime: ServiceContext, like: Sealed, **fields: Any) -> uuid.UUID:
    """A record appended through ``ledger.append``, signed by the archive-signing key itself
    (what only the key's holder can make), with ``like``'s metadata and ``fields`` over it."""
    with runtime.database.transaction() as session:
        sealed = session.get(ArchiveRecord, like.record.id)
        assert sealed is not None
        arguments = {
            "kind": ledger.RecordKind.SEALED,
            "conversation_id": sealed.conversation_id,
            "member_index": sealed.member_index,
            "reason": "retention",
            "message_count": sealed.message_count,
            "question_at": sealed.question_at,
            "sealed_at": runtime.clock.now(),
            "content_hash": sealed.content_hash,
            "metadata": {"v": 1},
            **fields,
        }
        return ledger.append(session, runtime.archive_signer, **arguments).id


def example_record_fields() -> ledger.RecordFields:
    """A record's fields with a distinct value in each (no database)."""
    return ledger.RecordFields(
        seq=4,
        id=uuid.UUID("00000000-0000-4000-8000-000000000001"),
        kind=ledger.RecordKind.DESTROYED,
        refers_to=uuid.UUID("00000000-0000-4000-8000-000000000002"),
        conversation_id=uuid.UUID("00000000-0000-4000-8000-000000000003"),
        member_index=bytes(range(32)),
        reason="retention",
        message_count=3,
        question_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        sealed_at=datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC),
        content_hash=bytes(range(1, 33)),
        metadata_json='{"v":1}',
        prev_hash=bytes(range(2, 34)),
    )
