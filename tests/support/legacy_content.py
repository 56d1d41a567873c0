"""Conversations in content format 1, written exactly the way the code before format 2 wrote them.

The associated data is built here with ``crypto.associated_data`` from the literal format-1
definition (label ``medchat/content/v1``, conversation id, row id, field), and the key-set tag
with ``crypto.key_integrity_tag`` at version 1, not through ``medchat.keys.sealing``: what the
tests read back is what the old code left in the database, not what today's code thinks it
left. The wraps come from ``ConversationKeys.new_key`` (unchanged by format 2).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from access_control import crypto
from medchat.identity.principal import Principal
from medchat.models import Attachment, Conversation, ConversationStatus, Message
from medchat.services.context import ServiceContext

_V1 = "medchat/content/v1"


def _seal_v1(dek: bytes, conversation_id: uuid.UUID, row_id: uuid.UUID, name: str, data: bytes):
    return crypto.seal(dek, data, crypto.associated_data(_V1, conversation_id, row_id, name))


@dataclass(frozen=True, repr=False)
class LegacyConversation:
    id: uuid.UUID
    dek: bytes
    #: Message ids by sequence number, and the attachment ids.
    messages: dict[int, uuid.UUID]
    attachments: list[uuid.UUID] = field(default_factory=list)


def legacy_conversation(
    runtime: ServiceContext,
    member: Principal,
    clinician_id: uuid.UUID,
    bodies: list[str],
    *,
    subject: str | None = "Old question",
    attachment: tuple[str, str, bytes] | None = None,
) -> LegacyConversation:
    """A live format-1 conversation: ``bodies`` alternate member, clinician, member...; the
    optional ``attachment`` (file name, type, bytes) hangs on an extra member message."""
    now = runtime.clock.now()
    with runtime.database.transaction() as session:
        conversation = Conversation(
            id=uuid.uuid4(),
            member_id=member.id,
            status=ConversationStatus.ANSWERED,
            message_count=0,
            created_at=now,
            last_message_at=now,
            status_since=now,
        )
        session.add(conversation)
        with session.no_autoflush:
            deks = runtime.conversation_keys(session).new_key(conversation, now)
            # Nor had it key epochs: the conversation row alone stands for epoch 1.
            session.expunge(deks.rows[1])
        dek = deks.of(1)
        # What the old code stored: no format column (the migration's default, 1) and the tag
        # at version 1.
        conversation.content_version = 1
        conversation.key_tag = crypto.key_integrity_tag(
            runtime.keys.integrity,
            owner_id=conversation.id,
            key_id=conversation.member_id.bytes,
            key_bytes=conversation.key_commitment,
            purpose="conversation-keys",
            version=1,
        )
        if subject is not None:
            conversation.subject_ciphertext = _seal_v1(
                dek, conversation.id, conversation.id, "subject", subject.encode()
            )
        session.flush()
        messages: dict[int, uuid.UUID] = {}
        texts = list(bodies) + ([""] if attachment else [])
        for seq, body in enumerate(texts, start=1):
            by_member = seq % 2 == 1 or (attachment is not None and seq == len(texts))
            message_id = uuid.uuid4()
            session.add(
                Message(
                    id=message_id,
                    conversation_id=conversation.id,
                    seq=seq,
                    author_role="member" if by_member else "clinician",
                    author_id=member.id if by_member else clinician_id,
                    body_ciphertext=_seal_v1(
                        dek, conversation.id, message_id, "body", body.encode()
                    ),
                    created_at=now,
                )
            )
            messages[seq] = message_id
        conversation.message_count = len(texts)
        attachments = []
        if attachment is not None:
            filename, content_type, data = attachment
            attachment_id = uuid.uuid4()
            session.flush()
            session.add(
                Attachment(
                    id=attachment_id,
                    conversation_id=conversation.id,
                    message_id=messages[len(texts)],
                    size=len(data),
                    filename_ciphertext=_seal_v1(
                        dek, conversation.id, attachment_id, "filename", filename.encode()
                    ),
                    content_type_ciphertext=_seal_v1(
                        dek, conversation.id, attachment_id, "content_type", content_type.encode()
                    ),
                    data_ciphertext=_seal_v1(dek, conversation.id, attachment_id, "data", data),
                    created_at=now,
                )
            )
            attachments.append(attachment_id)
    return LegacyConversation(conversation.id, dek, messages, attachments)
