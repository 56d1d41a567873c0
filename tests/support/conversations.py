"""Conversation content made with the service building blocks (no HTTP needed).

A conversation is created the way any code path creates one: a row, a DEK from
``ConversationKeys.new_key`` (wrapped for physician role, member and archive), a subject sealed
under the DEK, messages appended by ``ConversationService.append_message``. Attachments are
rows whose data, file name and type are sealed under the DEK bound to the attachment id and
the message it belongs to (``medchat.keys.sealing``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from medchat.identity.principal import Principal
from medchat.keys.epochs import ConversationDeks
from medchat.keys.sealing import ContentKey
from medchat.models import Attachment, Conversation, ConversationStatus
from medchat.services.context import ServiceContext
from medchat.services.conversation_access import ConversationAccess
from medchat.services.conversations import ConversationService


@dataclass(frozen=True, repr=False)
class StartedConversation:
    """A new conversation, its DEK (secret: the test keeps it to look for it) and messages.

    ``dek`` is the DEK of its first key epoch, the one it was started with.
    """

    id: uuid.UUID
    dek: bytes
    message_ids: tuple[uuid.UUID, ...]


def start_conversation(
    runtime: ServiceContext, member: Principal, *, subject: str | None, bodies: list[str]
) -> StartedConversation:
    """Create a member's conversation with a sealed subject and the given messages."""
    now = runtime.clock.now()
    with runtime.database.transaction() as session:
        conversation = Conversation(
            id=uuid.uuid4(),
            member_id=member.id,
            status=ConversationStatus.OPEN,
            message_count=0,
            created_at=now,
            last_message_at=now,
            status_since=now,
        )
        session.add(conversation)
        # The row is inserted once its commitment and tag are set (they are NOT NULL).
        with session.no_autoflush:
            dek = runtime.conversation_keys(session).new_key(conversation, now)
        if subject is not None:
            key = ContentKey.for_conversation(dek, conversation)
            conversation.subject_ciphertext = key.seal_subject(subject)
        service = ConversationService(session, runtime)
        ids = tuple(service.append_message(conversation, dek, member, body).id for body in bodies)
    return StartedConversation(conversation.id, dek.of(1), ids)


def add_attachment(
    runtime: ServiceContext,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    dek: ConversationDeks | bytes,
    *,
    filename: str,
    content_type: str,
    data: bytes,
) -> uuid.UUID:
    """Attach sealed bytes, file name and type to a message; returns the attachment id."""
    attachment_id = uuid.uuid4()
    with runtime.database.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        key = ContentKey.for_conversation(dek, conversation)
        row = Attachment(
            id=attachment_id,
            conversation_id=conversation_id,
            message_id=message_id,
            size=len(data),
            created_at=runtime.clock.now(),
        )
        row.filename_ciphertext = key.seal_attachment(row, "filename", filename.encode())
        row.content_type_ciphertext = key.seal_attachment(
            row, "content_type", content_type.encode()
        )
        row.data_ciphertext = key.seal_attachment(row, "data", data)
        session.add(row)
    return attachment_id


def open_dek(
    runtime: ServiceContext, actor: Principal, conversation_id: uuid.UUID
) -> ConversationDeks:
    """The DEKs as a request would open them: row check, then the key in the actor's session."""
    with runtime.database.transaction() as session:
        access = ConversationAccess(session, runtime)
        return access.open_key(actor, access.load(actor, conversation_id))


def reply(
    runtime: ServiceContext, actor: Principal, conversation_id: uuid.UUID, body: str
) -> uuid.UUID:
    """Append a message after opening the DEK through ``ConversationAccess``."""
    with runtime.database.transaction() as session:
        access = ConversationAccess(session, runtime)
        conversation = access.load(actor, conversation_id)
        dek = access.open_key(actor, conversation)
        return (
            ConversationService(session, runtime).append_message(conversation, dek, actor, body).id
        )


def read_bodies(runtime: ServiceContext, actor: Principal, conversation_id: uuid.UUID) -> list[str]:
    """Every message body, oldest first, read the way a request reads them."""
    with runtime.database.transaction() as session:
        access = ConversationAccess(session, runtime)
        conversation = access.load(actor, conversation_id)
        dek = access.open_key(actor, conversation)
        page = ConversationService(session, runtime).message_page(
            conversation, dek, limit=1000, ascending=True
        )
        return [item.body for item in page.items]
