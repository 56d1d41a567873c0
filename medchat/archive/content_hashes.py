"""The content hash of a sealed conversation: what an archive record commits to.

SECURITY-MODEL "Deletion, sealed archive": a sealed record holds the hash of the conversation's
ciphertexts, so editing any byte of what the archive keeps (the subject, a message body, an
attachment's bytes, name or type, a message's author or time, the key commitment) makes
``medchat archive verify`` name the record. Only ciphertexts and metadata are hashed: the hash
is recomputed from the database alone, with no key, and says nothing about the plaintext to
anyone who cannot open the DEK.

Definition (version 1), every ``H`` being ``crypto.digest`` (SHA-256 over typed,
length-prefixed parts, each with its own label)::

    message    = H("medchat/archive-content/message/v1", id, seq, author_role, author_id,
                   created_at ISO 8601, body_ciphertext)
    attachment = H("medchat/archive-content/attachment/v1", id, message_id, size,
                   filename_ciphertext, content_type_ciphertext, data_ciphertext,
                   created_at ISO 8601)
    content    = H("medchat/archive-content/v1", conversation_id, member_id, key_commitment,
                   subject_ciphertext or None,
                   number of messages, H(label, message digests in seq order),
                   number of attachments, H(label, attachment digests in id-byte order)
                   [, number of later key epochs, H(label, their commitments in epoch order)])

The bracketed parts are there only for a conversation with more than one key epoch
(``medchat.keys.epochs``): its later epochs' DEKs seal the later ciphertexts, so their
commitments are bound too; a conversation of one epoch (every record sealed before epochs
existed) hashes exactly as before.

Order is fixed in Python (sequence numbers, UUID bytes), never by a database collation, so
SQLite and PostgreSQL give the same hash. The archive wrap is deliberately left out: role-key
rotation re-seals it to a new archive key without changing the DEK. The key commitment (a MAC
of the DEK, checked after every unwrap) is in, so the record still binds the one DEK that
opens these ciphertexts.

Rows are streamed in batches (``yield_per``) and each attachment is hashed as it arrives, so
hashing a batch of conversations holds only 32-byte digests, never every file at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from access_control import crypto
from medchat.models import Attachment, Conversation, ConversationKeyEpoch, Message

_CONTENT_LABEL = "medchat/archive-content/v1"
_MESSAGE_LABEL = "medchat/archive-content/message/v1"
_MESSAGES_LABEL = "medchat/archive-content/messages/v1"
_ATTACHMENT_LABEL = "medchat/archive-content/attachment/v1"
_ATTACHMENTS_LABEL = "medchat/archive-content/attachments/v1"
_EPOCHS_LABEL = "medchat/archive-content/epochs/v1"


@dataclass
class SealedContent:
    """What is stored of one conversation now: its status and its content hash."""

    status: str
    content_hash: bytes


@dataclass
class _Parts:
    member_id: uuid.UUID
    commitment: bytes
    subject: bytes | None
    messages: list[tuple[int, bytes]] = field(default_factory=list)
    attachments: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: (epoch, commitment) of the key epochs after the first.
    epochs: list[tuple[int, bytes]] = field(default_factory=list)


def _message_digest(row: Row[*tuple[Any, ...]]) -> bytes:
    return crypto.digest(
        _MESSAGE_LABEL,
        row.id,
        row.seq,
        row.author_role,
        row.author_id,
        row.created_at.isoformat(),
        row.body_ciphertext,
    )


def _attachment_digest(row: Row[*tuple[Any, ...]]) -> bytes:
    return crypto.digest(
        _ATTACHMENT_LABEL,
        row.id,
        row.message_id,
        row.size,
        row.filename_ciphertext,
        row.content_type_ciphertext,
        row.data_ciphertext,
        row.created_at.isoformat(),
    )


def _combine(conversation_id: uuid.UUID, parts: _Parts) -> bytes:
    messages = [d for _, d in sorted(parts.messages, key=lambda item: item[0])]
    attachments = [d for _, d in sorted(parts.attachments, key=lambda item: item[0])]
    later = [c for _, c in sorted(parts.epochs, key=lambda item: item[0])]
    epochs = (len(later), crypto.digest(_EPOCHS_LABEL, *later)) if later else ()
    return crypto.digest(
        _CONTENT_LABEL,
        conversation_id,
        parts.member_id,
        parts.commitment,
        parts.subject,
        len(messages),
        crypto.digest(_MESSAGES_LABEL, *messages),
        len(attachments),
        crypto.digest(_ATTACHMENTS_LABEL, *attachments),
        *epochs,
    )


def content_hashes(
    session: Session, conversation_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, SealedContent]:
    """The stored state of each conversation that still exists (absent ids are left out).

    Four queries per call whatever the number of ids (callers pass a few hundred at a time).
    """
    ids = list(conversation_ids)
    if not ids:
        return {}
    parts: dict[uuid.UUID, _Parts] = {}
    statuses: dict[uuid.UUID, str] = {}
    for row in session.execute(
        select(
            Conversation.id,
            Conversation.status,
            Conversation.member_id,
            Conversation.key_commitment,
            Conversation.subject_ciphertext,
        ).where(Conversation.id.in_(ids))
    ):
        statuses[row.id] = row.status
        parts[row.id] = _Parts(row.member_id, row.key_commitment, row.subject_ciphertext)
    if not parts:
        return {}
    present = list(parts)
    for epoch_row in session.execute(
        select(
            ConversationKeyEpoch.conversation_id,
            ConversationKeyEpoch.epoch,
            ConversationKeyEpoch.key_commitment,
        ).where(ConversationKeyEpoch.conversation_id.in_(present), ConversationKeyEpoch.epoch > 1)
    ):
        parts[epoch_row.conversation_id].epochs.append((epoch_row.epoch, epoch_row.key_commitment))
    messages = select(
        Message.conversation_id,
        Message.id,
        Message.seq,
        Message.author_role,
        Message.author_id,
        Message.created_at,
        Message.body_ciphertext,
    ).where(Message.conversation_id.in_(present))
    for message in session.execute(messages.execution_options(yield_per=2000)):
        parts[message.conversation_id].messages.append((message.seq, _message_digest(message)))
    attachments = select(
        Attachment.conversation_id,
        Attachment.id,
        Attachment.message_id,
        Attachment.size,
        Attachment.filename_ciphertext,
        Attachment.content_type_ciphertext,
        Attachment.data_ciphertext,
        Attachment.created_at,
    ).where(Attachment.conversation_id.in_(present))
    # Files are up to the attachment limit each: a few at a time, hashed as they arrive.
    for attachment in session.execute(attachments.execution_options(yield_per=16)):
        parts[attachment.conversation_id].attachments.append(
            (attachment.id.bytes, _attachment_digest(attachment))
        )
    return {
        conversation_id: SealedContent(statuses[conversation_id], _combine(conversation_id, p))
        for conversation_id, p in parts.items()
    }


def content_hash(session: Session, conversation_id: uuid.UUID) -> bytes | None:
    """The content hash of one conversation as stored now; ``None`` if it does not exist."""
    state = content_hashes(session, [conversation_id]).get(conversation_id)
    return None if state is None else state.content_hash
