"""Re-sealing live conversations from content format 1 to format 2, online and resumable.

SECURITY-MODEL key hierarchy 10: a message's author, sequence number and conversation, and an
attachment's message, are bound into each ciphertext's associated data (``medchat.keys.sealing``,
format 2). Conversations written before format 2 existed bind only their place; until they are
re-sealed a database writer can still relabel their rows. Re-sealing needs their DEKs, and
nothing on the server opens a DEK alone: this runs with a clinician's keys (``medchat keys
reseal-content`` asks for their password and one-time code), like a rotation.

Each batch is one transaction: the next ``batch_size`` live format-1 conversations by id,
locked (a send or a deletion of one of them waits, and one that went first is seen whole).
For each, in a SAVEPOINT:

1. the DEKs (one per key epoch) are opened through the physician wraps, which verifies the
   key-set tag at version 1 and the commitments (``ConversationKeys.open_key``): a
   conversation that fails is refused;
2. every message body and attachment field is opened under format 1 and sealed under format
   2, under the DEK of the epoch that sealed it, bound to the labels the rows carry now.
   Format 1 never bound them, so a relabelling done
   *before* the re-seal cannot be seen by cryptography; what can be checked is: a member
   message is by the conversation's member and a clinician message is not, and every
   attachment belongs to a message of its conversation. A conversation that fails any of this
   is refused rather than vouched for;
3. the key-set tag is made anew at version 2 (``ConversationKeys.retag``).

A refused conversation is rolled back to its savepoint, logged, audited as
``content.reseal_refused`` (with the reason) and stays format 1, readable as before; the others
go on. Each re-sealed conversation is audited as ``content.reseal`` with its member as subject.
A run stopped anywhere resumes by itself: what is left is ``WHERE content_version = 1``. Sealed
archive records are never re-sealed: the signed ledger hashes their ciphertexts.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from access_control.crypto import DecryptionFailed
from access_control.roles import Role
from medchat import audit
from medchat.errors import KeyIntegrityFailure, NotFound, RoleKeyRequired
from medchat.identity.principal import Principal
from medchat.keys.conversation_keys import ConversationKeys
from medchat.keys.member_rewrap import audited_savepoint
from medchat.keys.sealing import CURRENT_FORMAT, ContentFormat, ContentKey
from medchat.models import LIVE_STATUSES, Attachment, Conversation, Holder, KeyRole, Message

log = logging.getLogger("medchat.content_resealing")

DEFAULT_BATCH = 100

#: Called with (conversations handled so far, conversations to handle in all) after a batch.
Progress = Callable[[int, int], None]

_LEFT = (Conversation.content_version == ContentFormat.PLACE) & Conversation.status.in_(
    LIVE_STATUSES
)

if TYPE_CHECKING:  # the service context is passed in; importing it would run back up a layer
    from medchat.services.context import ServiceContext


class ResealRefused(Exception):
    """One conversation cannot be vouched for in format 2; ``reason`` is a code, no content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ResealResult:
    """What a run did: conversations re-sealed, refused (ids), and live format-1 ones left
    (the refused included). ``finished`` is False when ``max_batches`` stopped the run."""

    resealed: int = 0
    refused: list[uuid.UUID] = field(default_factory=list)
    remaining: int = 0
    finished: bool = True


def remaining_conversations(session: Session) -> int:
    """Live conversations still in content format 1."""
    return session.scalar(select(func.count()).select_from(Conversation).where(_LEFT)) or 0


class ContentResealer:
    """Re-seals every live format-1 conversation with a clinician's physician role key."""

    def __init__(
        self,
        runtime: ServiceContext,
        actor: Principal,
        *,
        batch_size: int = DEFAULT_BATCH,
        progress: Progress | None = None,
        audit_context: audit.AuditContext | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if actor.role != Role.CLINICIAN or not actor.keyring.holds_role(KeyRole.PHYSICIAN):
            raise RoleKeyRequired
        self.runtime = runtime
        self.actor = actor
        self.batch_size = batch_size
        self.progress = progress
        self.audit_context = audit_context or audit.AuditContext(
            actor_id=actor.id, actor_role=actor.role, address="cli"
        )

    def run(self, max_batches: int | None = None) -> ResealResult:
        """Re-seal batch after batch until none is left (or ``max_batches`` ran)."""
        result = ResealResult()
        with self.runtime.database.transaction() as session:
            total = remaining_conversations(session)
        cursor: uuid.UUID | None = None
        batches = 0
        while True:
            if max_batches is not None and batches >= max_batches:
                result.finished = False
                break
            with self.runtime.database.transaction() as session:
                audit.set_context(session, self.audit_context)
                cursor = self._batch(session, cursor, result)
            if cursor is None:
                break
            batches += 1
            if self.progress is not None:
                done = result.resealed + len(result.refused)
                self.progress(done, max(total, done))
        with self.runtime.database.transaction() as session:
            result.remaining = remaining_conversations(session)
        return result

    def _batch(
        self, session: Session, cursor: uuid.UUID | None, result: ResealResult
    ) -> uuid.UUID | None:
        """Re-seal the next batch after ``cursor`` (refused ones are passed over for the rest
        of the run); the last id handled, or None when nothing is left."""
        statement = select(Conversation).where(_LEFT).order_by(Conversation.id)
        if cursor is not None:
            statement = statement.where(Conversation.id > cursor)
        locked = statement.limit(self.batch_size).with_for_update()
        rows = list(session.scalars(locked.execution_options(populate_existing=True)))
        if not rows:
            return None
        keys = self.runtime.conversation_keys(session)
        for conversation in rows:
            try:
                with audited_savepoint(session):
                    messages, attachments = self._reseal(session, keys, conversation)
            except (KeyIntegrityFailure, NotFound, ResealRefused) as exc:
                reason = exc.reason if isinstance(exc, ResealRefused) else _reason(exc)
                self._refuse(session, conversation, reason)
                result.refused.append(conversation.id)
                continue
            audit.record(
                session,
                "content.reseal",
                target_type="conversation",
                target_id=conversation.id,
                subject_id=conversation.member_id,
                details={
                    "from": int(ContentFormat.PLACE),
                    "to": int(CURRENT_FORMAT),
                    "messages": messages,
                    "attachments": attachments,
                },
            )
            result.resealed += 1
        return rows[-1].id

    def _reseal(
        self, session: Session, keys: ConversationKeys, conversation: Conversation
    ) -> tuple[int, int]:
        """Re-seal one conversation's bodies and attachment fields; (messages, attachments)."""
        deks = keys.open_key(conversation, self.actor.keyring, Holder.PHYSICIAN)
        old = ContentKey.for_conversation(deks, conversation)
        messages = session.execute(
            select(
                Message.id,
                Message.seq,
                Message.author_role,
                Message.author_id,
                Message.body_ciphertext,
            ).where(Message.conversation_id == conversation.id)
        ).all()
        for message in messages:
            by_member = message.author_id == conversation.member_id
            if by_member != (message.author_role == "member"):
                raise ResealRefused("author_mismatch")
        try:
            bodies = [
                {
                    "id": m.id,
                    "body_ciphertext": _in_format_2(old, m.body_ciphertext).seal_body(
                        m, old.open_body(m, m.body_ciphertext)
                    ),
                }
                for m in messages
            ]
        except DecryptionFailed:
            raise ResealRefused("body_does_not_open") from None
        if bodies:
            session.execute(update(Message), bodies)
        attachments = self._reseal_attachments(session, conversation, {m.id for m in messages}, old)
        keys.retag(conversation, CURRENT_FORMAT)
        session.flush()
        return len(bodies), attachments

    @staticmethod
    def _reseal_attachments(
        session: Session,
        conversation: Conversation,
        message_ids: set[uuid.UUID],
        old: ContentKey,
    ) -> int:
        """One attachment at a time: files are up to the attachment limit each."""
        ids = list(
            session.scalars(
                select(Attachment.id).where(Attachment.conversation_id == conversation.id)
            )
        )
        for attachment_id in ids:
            row = session.execute(
                select(
                    Attachment.id,
                    Attachment.message_id,
                    Attachment.filename_ciphertext,
                    Attachment.content_type_ciphertext,
                    Attachment.data_ciphertext,
                ).where(Attachment.id == attachment_id)
            ).one()
            if row.message_id not in message_ids:
                raise ResealRefused("attachment_outside_its_conversation")
            sealed = {}
            for name in ("filename", "content_type", "data"):
                column = f"{name}_ciphertext"
                try:
                    plain = old.open_attachment(row, name, getattr(row, column))
                    new = _in_format_2(old, getattr(row, column))
                except DecryptionFailed:
                    raise ResealRefused("attachment_does_not_open") from None
                sealed[column] = new.seal_attachment(row, name, plain)
            session.execute(update(Attachment), [{"id": attachment_id, **sealed}])
        return len(ids)

    @staticmethod
    def _refuse(session: Session, conversation: Conversation, reason: str) -> None:
        log.error("content of conversation %s left in format 1: %s", conversation.id, reason)
        audit.record(
            session,
            "content.reseal_refused",
            outcome="failed",
            target_type="conversation",
            target_id=conversation.id,
            subject_id=conversation.member_id,
            details={"reason": reason},
        )


def _in_format_2(old: ContentKey, envelope: bytes) -> ContentKey:
    """Format 2, sealing under the DEK that sealed ``envelope``: a re-seal changes the format
    of a ciphertext, never its key epoch (``medchat.keys.epochs``)."""
    return old.sealing_like(envelope, CURRENT_FORMAT)


def _reason(exc: Exception) -> str:
    # NotFound: no physician wrap this session's keys open; KeyIntegrityFailure: the key set
    # (tag, wrap or commitment) was altered.
    return "no_wrap_opens" if isinstance(exc, NotFound) else "key_set_altered"
