"""Conversations and messages: the member asks, a doctor answers, everything sealed.

Every read opens the conversation's DEK with a key from the caller's session (after the row
check of ``ConversationAccess``) and every write seals under it; no content is ever stored or
logged in clear. Message pages are keyset-paginated on the per-conversation sequence number,
so page 1 costs the same for 10 messages as for 100,000. Reads of content by a clinician are
audited, naming the member as the subject (their access log reads it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from access_control.principal import Principal
from access_control.roles import Role
from medchat import audit
from medchat.content import open_text, seal_text
from medchat.errors import Conflict
from medchat.models import Account, Attachment, Conversation, ConversationStatus, Message
from medchat.runtime import Runtime
from medchat.services.conversation_access import ConversationAccess


@dataclass
class AttachmentView:
    id: uuid.UUID
    filename: str
    content_type: str
    size: int


@dataclass
class MessageView:
    id: uuid.UUID
    author: str
    author_name: str | None
    body: str
    created_at: datetime
    seq: int
    attachments: list[AttachmentView] = field(default_factory=list)


@dataclass
class ConversationView:
    id: uuid.UUID
    subject: str | None
    status: str
    created_at: datetime
    last_message_at: datetime
    member_id: uuid.UUID
    messages: list[MessageView] = field(default_factory=list)


@dataclass
class Page:
    items: list  # type: ignore[type-arg]
    next_cursor: object | None


class ConversationService:
    def __init__(self, session: Session, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        self.access = ConversationAccess(session, runtime)

    # -- building blocks ---------------------------------------------------------------------

    def now(self) -> datetime:
        return self.runtime.clock.now()

    def append_message(
        self, conversation: Conversation, dek: bytes, actor: Principal, body: str
    ) -> Message:
        """Add a message at the next sequence number and move the conversation's status.

        The conversation row is updated with a single ``UPDATE ... RETURNING``, which also
        serialises concurrent sends to one conversation (no two messages share a number).
        """
        now = self.now()
        author = "clinician" if actor.role == Role.CLINICIAN else "member"
        status = ConversationStatus.ANSWERED if author == "clinician" else ConversationStatus.OPEN
        seq = self.session.execute(
            update(Conversation)
            .where(Conversation.id == conversation.id)
            .values(
                message_count=Conversation.message_count + 1,
                last_message_at=now,
                status=status,
            )
            .returning(Conversation.message_count)
            .execution_options(synchronize_session=False)
        ).scalar_one()
        conversation.message_count, conversation.last_message_at = seq, now
        conversation.status = status
        message = Message(
            id=uuid.uuid4(),
            conversation_id=conversation.id,
            seq=seq,
            author_role=author,
            author_id=actor.id,
            created_at=now,
        )
        message.body_ciphertext = seal_text(dek, conversation.id, message.id, "body", body)
        self.session.add(message)
        self.session.flush()
        return message

    def subject_of(self, conversation: Conversation, dek: bytes) -> str | None:
        if conversation.subject_ciphertext is None:
            return None
        return open_text(
            dek, conversation.id, conversation.id, "subject", conversation.subject_ciphertext
        )

    def conversation_view(self, conversation: Conversation, dek: bytes) -> ConversationView:
        return ConversationView(
            id=conversation.id,
            subject=self.subject_of(conversation, dek),
            status=conversation.status,
            created_at=conversation.created_at,
            last_message_at=conversation.last_message_at,
            member_id=conversation.member_id,
        )

    def message_views(
        self, conversation: Conversation, dek: bytes, messages: list[Message]
    ) -> list[MessageView]:
        """Decrypt a page of messages and their attachments' metadata (two queries)."""
        ids = [m.id for m in messages]
        attachments: dict[uuid.UUID, list[AttachmentView]] = {}
        if ids:
            for row in self.session.scalars(
                select(Attachment)
                .where(Attachment.message_id.in_(ids))
                .order_by(Attachment.created_at)
            ):
                attachments.setdefault(row.message_id, []).append(
                    AttachmentView(
                        id=row.id,
                        filename=open_text(
                            dek, conversation.id, row.id, "filename", row.filename_ciphertext
                        ),
                        content_type=open_text(
                            dek,
                            conversation.id,
                            row.id,
                            "content_type",
                            row.content_type_ciphertext,
                        ),
                        size=row.size,
                    )
                )
        clinician_ids = {m.author_id for m in messages if m.author_role == "clinician"}
        names = {}
        if clinician_ids:
            names = dict(
                self.session.execute(
                    select(Account.id, Account.display_name).where(Account.id.in_(clinician_ids))
                ).all()
            )
        return [
            MessageView(
                id=m.id,
                author=m.author_role,
                # Members see their doctor by display name only ("Dr. A."), never an e-mail.
                author_name=names.get(m.author_id) if m.author_role == "clinician" else None,
                body=open_text(dek, conversation.id, m.id, "body", m.body_ciphertext),
                created_at=m.created_at,
                seq=m.seq,
                attachments=attachments.get(m.id, []),
            )
            for m in messages
        ]

    def message_page(
        self,
        conversation: Conversation,
        dek: bytes,
        *,
        limit: int,
        before_seq: int | None = None,
        after_seq: int | None = None,
        ascending: bool = False,
    ) -> Page:
        """One page of messages: newest first by default, oldest first with ``ascending``.

        The cursor is a sequence number, so the query is an index range scan on
        (conversation_id, seq) whatever the conversation's length.
        """
        statement = select(Message).where(Message.conversation_id == conversation.id)
        if ascending:
            if after_seq is not None:
                statement = statement.where(Message.seq > after_seq)
            statement = statement.order_by(Message.seq.asc())
        else:
            if before_seq is not None:
                statement = statement.where(Message.seq < before_seq)
            statement = statement.order_by(Message.seq.desc())
        rows = list(self.session.scalars(statement.limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = rows[-1].seq if more and rows else None
        return Page(self.message_views(conversation, dek, rows), next_cursor)

    def audit_content_read(self, actor: Principal, conversation: Conversation, what: str) -> None:
        """Each read of content by a clinician is audited (who, which conversation, when)."""
        if actor.role == Role.MEMBER:
            return
        audit.record(
            self.session,
            f"content.{what}",
            target_type="conversation",
            target_id=conversation.id,
            subject_id=conversation.member_id,
        )

    def require_open(self, conversation: Conversation) -> None:
        if conversation.status == ConversationStatus.CLOSED:
            raise Conflict("This conversation is closed.")
