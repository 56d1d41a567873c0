"""A member's deletion request: the conversation leaves every live view and enters the archive.

SECURITY-MODEL "Deletion, sealed archive, retention". In one transaction the member and
physician wraps of the conversation's DEK are destroyed (crypto-shredding of the live copies:
no member or clinician key opens it any more), the conversation becomes ``sealed`` (every member
and clinician route, list and console page answers 404 for it: ``ConversationAccess``), and a
signed "sealed" record with the hash of its ciphertexts and metadata is appended to the archive
ledger (``medchat.archive.ledger``). The ciphertexts and the archive wrap stay, reachable only
through
an approved compliance retrieval: sealing is what lifts the archive wrap's gate
(``medchat.archive.gate``), so until then the archive key opens nothing of the conversation.
Either all of that commits or none of it does.

Races: the conversation row is locked first (``SELECT ... FOR UPDATE``), so a send or close
waiting on it finds it sealed (``require_open``: 404) and nothing is added after it was hashed.
Queued re-wraps (``RewrapRequest``) are deleted before the wraps, so a clinician session
re-sealing a member wrap right now finishes first and its new wrap is then deleted; and the wrap
deletion repeats until a pass deletes nothing, because on PostgreSQL a pass that waited for a
concurrent rotation's row lock runs on a snapshot taken before that rotation's new wrap.

Only the member may ask (clinicians, admins and compliance officers have no such route: 403),
and only for their own live conversation (404 otherwise, including once it is sealed).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat import audit
from medchat.archive import gate as archive_gate
from medchat.archive import ledger
from medchat.archive.content_hashes import content_hash
from medchat.clock import iso_z
from medchat.db import rows_changed
from medchat.errors import Forbidden, NotFound
from medchat.identity.principal import Principal
from medchat.models import (
    LIVE_STATUSES,
    Account,
    ArchiveRecord,
    Attachment,
    Conversation,
    ConversationClaim,
    ConversationKeyWrap,
    ConversationRead,
    ConversationStatus,
    Holder,
    IdempotencyRecord,
    RewrapRequest,
)
from medchat.services.attachments import upload_scope
from medchat.services.context import ServiceContext
from medchat.services.conversation_access import ConversationAccess
from medchat.services.conversations import message_scope
from medchat.services.draft_rows import forget_drafts
from medchat.services.member_conversations import START_SCOPE

MEMBER_REQUEST = "member_request"
#: The holders whose wraps a sealing destroys; the archive wrap is what the archive keeps.
LIVE_HOLDERS = (Holder.MEMBER, Holder.PHYSICIAN)


class DeletionService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime

    def delete_own(self, actor: Principal, conversation_id: uuid.UUID) -> str:
        """Seal one of the member's own conversations (API: 202 ``{"status": "sealed"}``).

        Raises ``Forbidden`` for anyone but a member and ``NotFound`` for an unknown id,
        someone else's conversation, or one already sealed (it is gone).
        """
        if actor.role != Role.MEMBER:
            raise Forbidden
        conversation = ConversationAccess(self.session, self.runtime).load(actor, conversation_id)
        return self._seal_requested(conversation)

    def seal_for_member(self, member_id: uuid.UUID, conversation_id: uuid.UUID) -> str:
        """Seal a live conversation of ``member_id`` on their erasure (``AccountDeletion``),
        whoever carries the request: the row check is the member id, no key is opened."""
        conversation = self.session.get(Conversation, conversation_id)
        if (
            conversation is None
            or conversation.member_id != member_id
            or conversation.status not in LIVE_STATUSES
        ):
            raise NotFound
        return self._seal_requested(conversation)

    def _seal_requested(self, conversation: Conversation) -> str:
        try:
            self.session.refresh(conversation, with_for_update=True)
        except InvalidRequestError:
            raise NotFound from None  # retention destroyed it while this request waited
        if conversation.status == ConversationStatus.SEALED:
            raise NotFound  # a concurrent request sealed it while this one waited
        record = self.seal(conversation, reason=MEMBER_REQUEST)
        audit.record(
            self.session,
            "conversation.seal",
            target_type="conversation",
            target_id=conversation.id,
            subject_id=conversation.member_id,
            details={"record_id": str(record.id), "seq": record.seq, "reason": MEMBER_REQUEST},
        )
        return ConversationStatus.SEALED

    def seal(self, conversation: Conversation, *, reason: str) -> ArchiveRecord:
        """Destroy the live wraps, lift the archive gate, mark the conversation sealed and
        append its ledger record.

        The caller holds the conversation's row lock and audits the action (a member's
        request here; retention may seal expired conversations the same way). A gated wrap
        that does not open (altered in the database) does not stop the sealing: the member's
        request and retention are honoured, the wrap stays as evidence, the failure is audited
        (``archive.gate_failed``) and a retrieval of the record is refused.
        """
        now = self.runtime.clock.now()
        prior_status = conversation.status
        self.session.execute(
            delete(RewrapRequest)
            .where(RewrapRequest.conversation_id == conversation.id)
            .execution_options(synchronize_session=False)
        )
        self._destroy_live_wraps(conversation.id)
        self._lift_gate(conversation, now)
        self._forget_live_traces(conversation)
        conversation.enter(ConversationStatus.SEALED, now)
        conversation.sealed_at = now
        self.session.flush()
        sealed_hash = content_hash(self.session, conversation.id)
        if sealed_hash is None:  # pragma: no cover - the row is locked by this transaction
            raise NotFound
        attachments, attachment_bytes = self.session.execute(
            select(func.count(), func.coalesce(func.sum(Attachment.size), 0)).where(
                Attachment.conversation_id == conversation.id
            )
        ).one()
        member_index = self.session.scalar(
            select(Account.email_index).where(Account.id == conversation.member_id)
        )
        return ledger.append(
            self.session,
            self.runtime.archive_signer,
            kind=ledger.RecordKind.SEALED,
            conversation_id=conversation.id,
            member_index=member_index or b"",
            reason=reason,
            message_count=conversation.message_count,
            question_at=conversation.created_at,
            sealed_at=now,
            content_hash=sealed_hash,
            # Ids, times and counts only: never content, never a name or an address.
            metadata={
                "v": 1,
                "member_id": str(conversation.member_id),
                "status": prior_status,
                "created_at": iso_z(conversation.created_at),
                "last_message_at": iso_z(conversation.last_message_at),
                "closed_at": iso_z(conversation.closed_at),
                "attachment_count": int(attachments),
                "attachment_bytes": int(attachment_bytes),
            },
        )

    def _destroy_live_wraps(self, conversation_id: uuid.UUID) -> None:
        """Delete the member and physician wraps, repeating until a pass finds none left."""
        statement = (
            delete(ConversationKeyWrap)
            .where(
                ConversationKeyWrap.conversation_id == conversation_id,
                ConversationKeyWrap.holder.in_(LIVE_HOLDERS),
            )
            .execution_options(synchronize_session=False)
        )
        while rows_changed(self.session.execute(statement)):
            pass

    def _lift_gate(self, conversation: Conversation, now: datetime) -> None:
        """The archive wrap becomes the plain HPKE wrap a retrieval opens."""
        result = archive_gate.lift(self.session, self.runtime.archive_gate, conversation.id, now)
        if result.refused:
            audit.record(
                self.session,
                "archive.gate_failed",
                outcome="failed",
                target_type="conversation",
                target_id=conversation.id,
                subject_id=conversation.member_id,
                details={"lifted": result.lifted, "refused": result.refused},
            )

    def _forget_live_traces(self, conversation: Conversation) -> None:
        """Read markers, claims, drafts and idempotency records served the live conversation."""
        forget_drafts(self.session, [conversation.id])
        for model in (ConversationRead, ConversationClaim):
            self.session.execute(
                delete(model)
                .where(model.conversation_id == conversation.id)
                .execution_options(synchronize_session=False)
            )
        self.session.execute(
            delete(IdempotencyRecord)
            .where(
                or_(
                    IdempotencyRecord.scope.in_(
                        [message_scope(conversation.id), upload_scope(conversation.id)]
                    ),
                    (IdempotencyRecord.scope == START_SCOPE)
                    & (IdempotencyRecord.resource_id == conversation.id),
                )
            )
            .execution_options(synchronize_session=False)
        )
