"""Four-eyes retrieval of sealed archive content (SECURITY-MODEL "Deletion, sealed archive").

Officer A asks, with a written justification (20 to 2,000 characters; stored sealed under the
profile key, since it may name a person); officer B, never A, approves; then A alone opens the
conversation, for ``retrieval_hours`` (default 24) after the approval, with the archive role key
that A's two-factor session holds (``ConversationKeys.open_key`` with ``Holder.ARCHIVE``): the
server holds no key that opens it. B must hold the archive key too (``KeyCustody.holds_current``,
else 403 ``role_key_required``): an officer who could not open the record cannot vouch for
opening it. A conversation still gated (``medchat.archive.gate``: never sealed by the service)
is refused, 409 ``archive_gated``. Before approval, after expiry, and for anyone but A (B or a
third officer) the answer is 403. Before anything is decrypted, the record's hash, its
signature under the pinned key and the stored content's hash are checked against the ledger
(``ArchiveIntegrityFailure`` otherwise), so what A reads is what was sealed; the decrypting
itself is ``medchat.services.archive_reading``'s.

Every step is audited with the member as subject (their access log shows "retrieval by
compliance"): request, approval, each opening, attachment download and export, and each
refusal (written after the refused request rolls back).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import select
from sqlalchemy.orm import Session

from access_control import crypto
from access_control.roles import Role
from medchat import audit
from medchat.archive import gate as archive_gate
from medchat.archive import ledger
from medchat.archive.bundle import conversation_document, record_document, sign_bundle
from medchat.clock import iso_z
from medchat.errors import (
    ArchiveGated,
    ArchiveIntegrityFailure,
    Conflict,
    Forbidden,
    MedchatError,
    NotFound,
    RoleKeyRequired,
    ValidationFailed,
)
from medchat.identity.principal import Principal
from medchat.keys.epochs import ConversationDeks
from medchat.models import (
    ArchiveRecord,
    Attachment,
    Conversation,
    Holder,
    KeyRole,
    RetrievalRequest,
)
from medchat.services.archive_reading import (
    ArchivedConversation,
    attachment_digests,
    open_attachment,
    read_conversation,
)
from medchat.services.attachments import AttachmentFile
from medchat.services.context import ServiceContext
from medchat.services.conversation_pages import Page
from medchat.services.retrieval_views import (
    APPROVED,
    PENDING,
    RetrievalView,
    member_of,
    retrieval_view,
)

JUSTIFICATION_MIN = 20
JUSTIFICATION_MAX = 2000
_JUSTIFICATION_FIELD = "retrieval_justification"
log = logging.getLogger("medchat.retrieval")


class RetrievalService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime

    # -- asking and approving ------------------------------------------------------------------

    def request(self, actor: Principal, record_id: uuid.UUID, justification: str) -> RetrievalView:
        """Ask to open a sealed record. ``NotFound`` for an unknown record, ``Conflict`` when
        retention destroyed its content."""
        self._require_compliance(actor)
        if not JUSTIFICATION_MIN <= len(justification.strip()) <= JUSTIFICATION_MAX:
            raise ValidationFailed(
                details={
                    "justification": [
                        f"Write {JUSTIFICATION_MIN} to {JUSTIFICATION_MAX} characters."
                    ]
                }
            )
        record = self._sealed_record(record_id)
        if self._destroyed(record):
            raise Conflict("Retention destroyed this record's content.")
        now = self.runtime.clock.now()
        row = RetrievalRequest(
            id=uuid.uuid4(),
            record_id=record.id,
            requested_by=actor.id,
            requested_at=now,
            status=PENDING,
        )
        row.justification_ciphertext = self._seal_justification(row.id, justification)
        self.session.add(row)
        self.session.flush()
        self._audit("archive.retrieval.request", row, record)
        return self._view(row, record, justification)

    def list_requests(
        self,
        actor: Principal,
        *,
        status: str = PENDING,
        limit: int,
        before: tuple[datetime, uuid.UUID] | None = None,
    ) -> Page[RetrievalView, tuple[datetime, uuid.UUID]]:
        """Requests in ``status`` (``pending`` by default: what awaits a second officer),
        newest first, justification included; one whose justification does not open (altered
        in the database) is left out and audited as ``retrieval.integrity_refused``."""
        self._require_compliance(actor)
        statement = (
            select(RetrievalRequest, ArchiveRecord)
            .join(ArchiveRecord, ArchiveRecord.id == RetrievalRequest.record_id)
            .where(RetrievalRequest.status == status)
            .order_by(RetrievalRequest.requested_at.desc(), RetrievalRequest.id.desc())
            .limit(limit + 1)
        )
        if before is not None:
            at, row_id = before
            statement = statement.where(
                (RetrievalRequest.requested_at < at)
                | ((RetrievalRequest.requested_at == at) & (RetrievalRequest.id < row_id))
            )
        rows = self.session.execute(statement).all()
        items = []
        for row, record in rows[:limit]:
            try:
                justification = self._open_justification(row)
            except crypto.DecryptionFailed:  # altered in the database; alone it answers 409
                audit.record(
                    self.session,
                    "retrieval.integrity_refused",
                    outcome="failed",
                    target_type="retrieval",
                    target_id=row.id,
                    subject_id=member_of(record),
                    details={"record_id": str(record.id), "failure": "content"},
                )
                continue
            items.append(self._view(row, record, justification))
        last = rows[limit - 1][0] if len(rows) > limit else None
        return Page(items, (last.requested_at, last.id) if last is not None else None)

    def get(self, actor: Principal, retrieval_id: uuid.UUID) -> RetrievalView:
        """One request with its justification (any compliance officer: the approver reads it)."""
        self._require_compliance(actor)
        row, record = self._load(retrieval_id)
        return self._view(row, record, self._open_justification(row))

    def approve(self, actor: Principal, retrieval_id: uuid.UUID) -> str:
        """Approve another officer's request: it opens for them until ``retrieval_hours`` from
        now. ``Forbidden`` for the requester, ``RoleKeyRequired`` for an officer whose session
        holds no archive key, ``Conflict`` once approved."""
        self._require_compliance(actor)
        row, record = self._load(retrieval_id, lock=True)
        if row.requested_by == actor.id:
            self._refuse("archive.retrieval.approve", row, record, "self_approval")
        self._require_archive_key("archive.retrieval.approve", actor, row, record)
        if row.status != PENDING:
            raise Conflict("This retrieval request was already approved.")
        now = self.runtime.clock.now()
        row.status = APPROVED
        row.approved_by = actor.id
        row.approved_at = now
        row.expires_at = now + self.runtime.settings.retrieval_ttl
        self.session.flush()
        self._audit("archive.retrieval.approve", row, record, {"expires_at": iso_z(row.expires_at)})
        return APPROVED

    # -- opening -------------------------------------------------------------------------------

    def content(self, actor: Principal, retrieval_id: uuid.UUID) -> ArchivedConversation:
        """The decrypted conversation, for the requester of an approved, unexpired request."""
        row, record, conversation, dek = self._open("archive.retrieval.open", actor, retrieval_id)
        opened = self._conversation(row, record, conversation, dek)
        self._audit("archive.retrieval.open", row, record)
        return opened

    def attachment(
        self, actor: Principal, retrieval_id: uuid.UUID, attachment_id: uuid.UUID
    ) -> AttachmentFile:
        """One attachment's bytes, under the same rule as ``content``."""
        row, record, conversation, dek = self._open(
            "archive.retrieval.attachment", actor, retrieval_id
        )
        stored = self.session.get(Attachment, attachment_id)
        if stored is None or stored.conversation_id != conversation.id:
            raise NotFound
        opened = open_attachment(self.session, conversation, dek, stored)
        self._audit(
            "archive.retrieval.attachment", row, record, {"attachment_id": str(attachment_id)}
        )
        return opened

    def export(self, actor: Principal, retrieval_id: uuid.UUID) -> dict[str, Any]:
        """The signed bundle of ``medchat.archive.bundle``, under the same rule as ``content``."""
        row, record, conversation, dek = self._open("archive.retrieval.export", actor, retrieval_id)
        opened = self._conversation(row, record, conversation, dek)
        digests = attachment_digests(self.session, conversation, dek)
        body = {
            "exported_at": iso_z(self.runtime.clock.now()),
            "exported_by": str(actor.id),
            "retrieval": {
                "id": str(row.id),
                "requested_by": str(row.requested_by),
                "approved_by": str(row.approved_by),
                "approved_at": iso_z(row.approved_at),
                "expires_at": iso_z(row.expires_at),
            },
            "record": record_document(record),
            "conversation": conversation_document(
                opened.conversation_id, opened.subject, opened.created_at, opened.messages, digests
            ),
        }
        bundle = sign_bundle(self.runtime.archive_signer, body)
        self._audit("archive.retrieval.export", row, record)
        return bundle

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _require_compliance(actor: Principal) -> None:
        if actor.role != Role.COMPLIANCE:
            raise Forbidden

    def _sealed_record(self, record_id: uuid.UUID) -> ArchiveRecord:
        record = self.session.get(ArchiveRecord, record_id)
        if record is None or record.kind != ledger.RecordKind.SEALED:
            raise NotFound
        return record

    def _destroyed(self, record: ArchiveRecord) -> bool:
        return (
            self.session.scalar(
                select(ArchiveRecord.id).where(
                    ArchiveRecord.refers_to == record.id,
                    ArchiveRecord.kind == ledger.RecordKind.DESTROYED,
                )
            )
            is not None
        )

    def _load(
        self, retrieval_id: uuid.UUID, *, lock: bool = False
    ) -> tuple[RetrievalRequest, ArchiveRecord]:
        row = self.session.get(RetrievalRequest, retrieval_id, with_for_update=lock or None)
        if row is None:
            raise NotFound
        return row, self._sealed_record(row.record_id)

    def _open(
        self, action: str, actor: Principal, retrieval_id: uuid.UUID
    ) -> tuple[RetrievalRequest, ArchiveRecord, Conversation, ConversationDeks]:
        """The checks every opening passes, in order; the DEK from the actor's archive key."""
        self._require_compliance(actor)
        row, record = self._load(retrieval_id)
        if row.requested_by != actor.id:
            self._refuse(action, row, record, "not_the_requester")
        if row.status != APPROVED or row.expires_at is None:
            self._refuse(action, row, record, "not_approved")
        if self.runtime.clock.now() >= row.expires_at:
            self._refuse(action, row, record, "expired")
        self._require_archive_key(action, actor, row, record)
        conversation = self.session.get(Conversation, record.conversation_id)
        if conversation is None:
            raise Conflict("Retention destroyed this record's content.")
        self._check_integrity(record)
        if not archive_gate.lifted(self.session, conversation):
            log.error("retrieval %s: record %s is still gated", row.id, record.id)
            self._refuse(action, row, record, "gated")
        keys = self.runtime.conversation_keys(self.session)
        dek = keys.open_key(conversation, actor.keyring, Holder.ARCHIVE)
        return row, record, conversation, dek

    def _check_integrity(self, record: ArchiveRecord) -> None:
        """The record is the one the signing key made, and the content is what it hashed."""
        try:
            ledger.check_record(self.session, self.runtime.archive_signer.public_key, record)
        except crypto.IntegrityCheckFailed:
            audit.record_on_rollback(
                self.session,
                "archive.integrity_failed",
                outcome="failed",
                target_type="archive_record",
                target_id=record.id,
                subject_id=member_of(record),
            )
            raise ArchiveIntegrityFailure from None

    def _conversation(
        self,
        row: RetrievalRequest,
        record: ArchiveRecord,
        conversation: Conversation,
        dek: ConversationDeks,
    ) -> ArchivedConversation:
        return read_conversation(
            self.session,
            self.runtime,
            record,
            conversation,
            dek,
            expires_at=row.expires_at or record.sealed_at,
        )

    def _seal_justification(self, retrieval_id: uuid.UUID, text: str) -> bytes:
        return self.runtime.profiles.seal(retrieval_id, _JUSTIFICATION_FIELD, text) or b""

    def _open_justification(self, row: RetrievalRequest) -> str:
        opened = self.runtime.profiles.open(
            row.id, _JUSTIFICATION_FIELD, row.justification_ciphertext
        )
        return opened or ""

    def _view(
        self, row: RetrievalRequest, record: ArchiveRecord, justification: str
    ) -> RetrievalView:
        return retrieval_view(row, record, justification, self.runtime.clock.now())

    def _audit(
        self,
        action: str,
        row: RetrievalRequest,
        record: ArchiveRecord,
        details: dict[str, Any] | None = None,
    ) -> None:
        audit.record(
            self.session,
            action,
            target_type="retrieval",
            target_id=row.id,
            subject_id=member_of(record),
            details={"record_id": str(record.id), **(details or {})},
        )

    def _require_archive_key(
        self, action: str, actor: Principal, row: RetrievalRequest, record: ArchiveRecord
    ) -> None:
        """Refuse (audited, ``RoleKeyRequired``) an officer whose session holds no archive key."""
        if not self.runtime.custody(self.session).holds_current(actor.keyring, KeyRole.ARCHIVE):
            self._refuse(action, row, record, "role_key_required")

    def _refuse(
        self, action: str, row: RetrievalRequest, record: ArchiveRecord, why: str
    ) -> NoReturn:
        """Audit the refusal (after the rollback) and raise its error (``Forbidden`` mostly)."""
        audit.record_on_rollback(
            self.session,
            action,
            target_type="retrieval",
            target_id=row.id,
            subject_id=member_of(record),
            details={"record_id": str(record.id), "refused": why},
        )
        error, message = _REFUSALS[why]
        raise error(message)


_SELF = "A retrieval must be approved by another officer than the one who asked."
_REFUSALS: dict[str, tuple[type[MedchatError], str | None]] = {
    "self_approval": (Forbidden, _SELF),
    "not_the_requester": (Forbidden, "Only the officer who asked for this retrieval may open it."),
    "not_approved": (Forbidden, "This retrieval has not been approved by a second officer yet."),
    "expired": (Forbidden, "This retrieval has expired; ask again."),
    "role_key_required": (RoleKeyRequired, "Your session does not hold the archive key."),
    "gated": (ArchiveGated, None),  # audited and logged: only a database writer gets here
}
