"""Reading a sealed conversation with its DEK in hand: messages in order, attachments by id.

The caller (``medchat.services.retrieval``) has already passed every check an opening needs
(the four-eyes rule, the archive role key, the ledger's integrity check) and unwrapped the DEK;
this module only decrypts. Messages are read in sequence order in batches, and each opened
attachment carries the SHA-256 of its plaintext, which the signed export bundle lists. Content
opens in the format the conversation's verified key set names, under the same bindings as a
live read (``medchat.keys.sealing``). Sealed conversations are never re-sealed (the ledger hashed
their ciphertexts), so they keep the format they were sealed in. The reader is a compliance
officer, staff: files are named neutrally (``photo-2.jpg``), as for a clinician
(``medchat.services.patient_view.sees_upload_names``), and their uploaded names are not opened.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from medchat.keys.epochs import ConversationDeks
from medchat.keys.sealing import ContentKey
from medchat.models import ArchiveRecord, Attachment, Conversation, Message
from medchat.services.attachments import AttachmentFile
from medchat.services.context import ServiceContext
from medchat.services.conversation_views import MessageView
from medchat.services.conversations import ConversationService
from medchat.services.message_views import neutral_attachment_views

_MESSAGES_PER_QUERY = 500


@dataclass
class ArchivedConversation:
    """A sealed conversation opened for its requester: subject, messages, attachment metadata."""

    record_id: uuid.UUID
    conversation_id: uuid.UUID
    subject: str | None
    created_at: datetime
    sealed_at: datetime
    reason: str
    expires_at: datetime
    messages: list[MessageView] = field(default_factory=list)


def read_conversation(
    session: Session,
    runtime: ServiceContext,
    record: ArchiveRecord,
    conversation: Conversation,
    dek: ConversationDeks,
    *,
    expires_at: datetime,
) -> ArchivedConversation:
    """The conversation's subject and every message, decrypted with ``dek``."""
    conversations = ConversationService(session, runtime)
    opened = ArchivedConversation(
        record_id=record.id,
        conversation_id=conversation.id,
        subject=conversations.subject_of(conversation, dek),
        created_at=conversation.created_at,
        sealed_at=record.sealed_at,
        reason=record.reason,
        expires_at=expires_at,
    )
    after = 0
    while True:
        batch = list(
            session.scalars(
                select(Message)
                .where(Message.conversation_id == conversation.id, Message.seq > after)
                .order_by(Message.seq)
                .limit(_MESSAGES_PER_QUERY)
            )
        )
        if not batch:
            return opened
        opened.messages += conversations.message_views(conversation, dek, batch, neutral_names=True)
        after = batch[-1].seq


@dataclass(frozen=True, repr=False)
class OpenedAttachment(AttachmentFile):
    """An attachment's decrypted bytes and names, with the SHA-256 of the bytes."""

    sha256: str = ""


def open_attachment(
    session: Session, conversation: Conversation, dek: ConversationDeks, stored: Attachment
) -> OpenedAttachment:
    """Decrypt one stored attachment of ``conversation`` with its ``dek`` (``stored`` must be
    one of its rows: the caller checked ``stored.conversation_id``), named neutrally."""
    key = ContentKey.for_conversation(dek, conversation)
    data = key.open_attachment(stored, "data", stored.data_ciphertext)
    views = {view.id: view for _, view in neutral_attachment_views(session, key, conversation.id)}
    return OpenedAttachment(
        id=stored.id,
        filename=views[stored.id].filename,
        content_type=views[stored.id].content_type,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def attachment_digests(
    session: Session, conversation: Conversation, dek: ConversationDeks
) -> dict[uuid.UUID, str]:
    """The SHA-256 (hex) of each attachment's decrypted bytes, by attachment id."""
    key = ContentKey.for_conversation(dek, conversation)
    return {
        stored.id: hashlib.sha256(
            key.open_attachment(stored, "data", stored.data_ciphertext)
        ).hexdigest()
        for stored in session.scalars(
            select(Attachment).where(Attachment.conversation_id == conversation.id)
        )
    }
