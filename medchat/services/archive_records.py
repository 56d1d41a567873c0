"""What compliance sees of the sealed archive without a retrieval: metadata, and the proof.

SECURITY-MODEL "Who uses it": a compliance officer sees sealed-archive metadata (ids, times,
reason, message count) and never content without an approved retrieval. Records are found by
the member's e-mail address through its blind index (the address itself is neither stored
here nor written to a URL, a log or the audit trail) and paged newest first on the ledger's
sequence number. ``verify`` walks the whole ledger against the pinned archive-signing key.
Searches and verifications are audited; a search names the member as subject when the
address belongs to an account, so it appears in that member's access log.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from access_control.roles import Role
from medchat import audit
from medchat.archive import ledger
from medchat.errors import Forbidden
from medchat.identity.principal import Principal
from medchat.models import Account, ArchiveRecord
from medchat.services.context import ServiceContext
from medchat.services.conversation_pages import Page


@dataclass
class RecordView:
    """One sealed record as compliance sees it: metadata only."""

    id: uuid.UUID
    seq: int
    conversation_id: uuid.UUID
    question_at: datetime
    sealed_at: datetime
    reason: str
    message_count: int
    #: True once retention destroyed the archived content (a "destroyed" record refers here).
    content_destroyed: bool


class ArchiveRecordService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime

    @staticmethod
    def _require_compliance(actor: Principal) -> None:
        if actor.role != Role.COMPLIANCE:
            raise Forbidden

    def search(
        self, actor: Principal, member_email: str, *, limit: int, before_seq: int | None = None
    ) -> Page[RecordView, int]:
        """Sealed records of the member with this address, newest first (``before_seq``: the
        cursor). An unknown address finds nothing, exactly like one without records."""
        self._require_compliance(actor)
        index = self.runtime.profiles.email_index(member_email)
        destroyed = aliased(ArchiveRecord)
        is_destroyed = (
            select(destroyed.id)
            .where(
                destroyed.refers_to == ArchiveRecord.id,
                destroyed.kind == ledger.RecordKind.DESTROYED,
            )
            .exists()
        )
        statement = (
            select(ArchiveRecord, is_destroyed)
            .where(
                ArchiveRecord.member_index == index,
                ArchiveRecord.kind == ledger.RecordKind.SEALED,
            )
            .order_by(ArchiveRecord.seq.desc())
            .limit(limit + 1)
        )
        if before_seq is not None:
            statement = statement.where(ArchiveRecord.seq < before_seq)
        rows = self.session.execute(statement).all()
        more = len(rows) > limit
        items = [
            RecordView(
                id=record.id,
                seq=record.seq,
                conversation_id=record.conversation_id,
                question_at=record.question_at,
                sealed_at=record.sealed_at,
                reason=record.reason,
                message_count=record.message_count,
                content_destroyed=bool(gone),
            )
            for record, gone in rows[:limit]
        ]
        member_id = self.session.scalar(select(Account.id).where(Account.email_index == index))
        audit.record(
            self.session,
            "archive.search",
            target_type="archive",
            subject_id=member_id,
            details={"results": len(items)},
        )
        return Page(items, items[-1].seq if more else None)

    def verify(self, actor: Principal) -> ledger.LedgerReport:
        """Walk the whole ledger (links, hashes, signatures, content, head); audited."""
        self._require_compliance(actor)
        signer = self.runtime.archive_signer
        report = ledger.verify(self.session, signer.public_key, signer.head_mac_key)
        audit.record(
            self.session,
            "archive.verify",
            target_type="archive",
            outcome="success" if report.ok else "failed",
            details={
                "records": report.records,
                "first_bad": None if report.first_bad is None else str(report.first_bad),
                "head_seq": report.head_seq,
            },
        )
        return report
