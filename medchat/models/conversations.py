"""Conversations, their key wraps, messages, attachments, consents and idempotency records.

Everything that counts as content (subject, bodies, attachment bytes, file names and types)
is stored only as ``*_ciphertext`` under the conversation's DEK, with associated data naming
the conversation, the row, the field and (format 2) a message's sequence number and author and
an attachment's message. The DEK itself exists only wrapped, once per holder
(physician role, member, compliance archive); ``key_commitment`` and ``key_tag`` let the
service detect a wrap or DEK swapped in by someone who can write the database.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Protocol

from sqlalchemy import ForeignKey, Index, LargeBinary, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from medchat.db import Base, new_id
from medchat.models.integrity import TaggedRow, covered, inert, tagged


class ConversationStatus(enum.StrEnum):
    OPEN = "open"  # waiting for a doctor
    ANSWERED = "answered"  # a doctor wrote last
    CLOSED = "closed"
    # Deleted at the member's request: gone from every interface, kept only in the archive.
    SEALED = "sealed"


#: What members and clinicians may see; a sealed conversation is not live (404 everywhere).
LIVE_STATUSES = (ConversationStatus.OPEN, ConversationStatus.ANSWERED, ConversationStatus.CLOSED)


class Holder(enum.StrEnum):
    PHYSICIAN = "physician"
    MEMBER = "member"
    ARCHIVE = "archive"


#: The partial indexes retention walks (``medchat.services.retention_due``): live conversations
#: by question time, sealed ones by sealing time. A query must repeat the predicate exactly for
#: the planner to use them.
LIVE_PREDICATE = "status <> 'sealed'"
SEALED_PREDICATE = "status = 'sealed'"


class Conversation(Base):
    __tablename__ = "conversations"
    __row_integrity__ = covered(
        "key_tag (integrity key) binds the member, the key commitment checked after every"
        " unwrap, and the content format (content_version)"
    )
    __table_args__ = (
        # The clinicians' lists walk (status, status_since): no column a send writes every
        # time is in an index, so a send's conversation update is a heap-only (HOT) one (and
        # on PostgreSQL the table leaves a tenth of each page free for it: migration 0027).
        Index("ix_conversations_status_since", "status", "status_since", "id"),
        Index(
            "ix_conversations_live_created_at",
            "created_at",
            "id",
            postgresql_where=text(LIVE_PREDICATE),
            sqlite_where=text(LIVE_PREDICATE),
        ),
        Index(
            "ix_conversations_sealed_sealed_at",
            "sealed_at",
            "id",
            postgresql_where=text(SEALED_PREDICATE),
            sqlite_where=text(SEALED_PREDICATE),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    member_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    subject_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    message_count: Mapped[int] = mapped_column(default=0)
    key_commitment: Mapped[bytes] = mapped_column(LargeBinary(32))
    key_tag: Mapped[bytes] = mapped_column(LargeBinary(32))
    # The associated-data format of this conversation's content (``medchat.keys.sealing``). The
    # key-set tag covers it, so a writer who sets it back fails the tag. Rows older than
    # format 2 default to 1; new conversations are written with the current format.
    content_version: Mapped[int] = mapped_column(server_default=text("1"))
    created_at: Mapped[datetime]
    last_message_at: Mapped[datetime]
    # When the conversation entered its status: for an open one, since when the member has
    # waited for an answer (a second message before the answer does not move it), for an
    # answered or closed one, when it was answered or closed. The clinicians' queue and
    # history are ordered on it. A send that keeps the status keeps it, so the send's UPDATE
    # changes no indexed column (``tests/unit/test_indexes.py``). Order only (a writer who
    # changes it reorders a list, hands nothing to anyone), so outside the key-set tag.
    status_since: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    sealed_at: Mapped[datetime | None]
    # The member marked the question urgent: first in the open queue. Order only (a writer
    # who flips it reorders a list, hands nothing to anyone), so outside the key-set tag.
    urgent: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    # The version of the "not for emergencies" notice the member acknowledged when asking
    # (``medchat.services.service_info``); NULL for questions from before the notice.
    notice_version: Mapped[str | None] = mapped_column(String(16))

    def enter(self, status: str, now: datetime) -> None:
        """Move to ``status`` at ``now``; ``status_since`` moves only when the status does (a
        send's statement does the same in SQL: ``medchat.services.message_append``)."""
        if status != self.status:
            self.status_since = now
        self.status = status


class ConversationRow(Protocol):
    """What a conversation's content is checked, opened and written by: its id, member,
    status, message count and the key set its tag vouches for. A loaded ``Conversation`` is
    one; so is a ``ConversationRecord`` read as columns (a page read, a send: no object for
    the session to track)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def member_id(self) -> uuid.UUID: ...

    @property
    def status(self) -> str: ...

    @property
    def message_count(self) -> int: ...

    @property
    def key_commitment(self) -> bytes: ...

    @property
    def key_tag(self) -> bytes: ...

    @property
    def content_version(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    """A conversation row read as columns (``ConversationRow``). Not mapped: nothing a flush
    could write, and a change to it is an error, not a lost update."""

    id: uuid.UUID
    member_id: uuid.UUID
    status: str
    message_count: int
    key_commitment: bytes
    key_tag: bytes
    content_version: int


#: ``ConversationRecord``'s columns, in its order.
RECORD_COLUMNS = tuple(field.name for field in fields(ConversationRecord))


class ConversationKeyWrap(Base):
    __tablename__ = "conversation_key_wraps"
    __row_integrity__ = covered(
        "HPKE info binds holder, recipient and conversation; the DEK must match the commitment"
        " of the wrap's epoch"
    )
    __table_args__ = (UniqueConstraint("conversation_id", "epoch", "holder", "recipient_key_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # Looked up through the unique constraint above, which it leads.
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    # The key epoch whose DEK this wraps (``medchat.models.epochs``); the unwrapped DEK must
    # match that epoch's commitment, so a wrap moved to another epoch opens nothing.
    epoch: Mapped[int] = mapped_column(server_default=text("1"))
    holder: Mapped[str] = mapped_column(String(16))
    # The role key (physician, archive) or the member's personal key the wrap is sealed to.
    recipient_key_id: Mapped[bytes] = mapped_column(LargeBinary(8), index=True)
    wrap: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class Message(Base):
    __tablename__ = "messages"
    __row_integrity__ = covered(
        "sealed under the DEK; associated data binds conversation, id, seq and author (format 2)"
    )
    __table_args__ = (UniqueConstraint("conversation_id", "seq"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    # Position in the conversation: keyset pagination whose cost ignores history length.
    seq: Mapped[int]
    author_role: Mapped[str] = mapped_column(String(16))
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    body_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class Attachment(Base):
    __tablename__ = "attachments"
    __row_integrity__ = covered(
        "sealed under the DEK; associated data binds conversation, id and message (format 2)"
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    size: Mapped[int]
    filename_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    content_type_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    data_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class Consent(Base):
    """A versioned consent decision; withdrawal keeps the row (the history is the record)."""

    __tablename__ = "consents"
    __row_integrity__ = inert(
        "decides only whether the member themself may ask; hands nothing to anyone else"
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(32))
    granted_at: Mapped[datetime]
    withdrawn_at: Mapped[datetime | None]


class IdempotencyRecord(TaggedRow, Base):
    """The first result of a create, found again by (account, ``Idempotency-Key``).

    ``request_hash`` is a keyed MAC of the request body (a plain hash would let a dump test
    guesses of a message); the response is rebuilt from the stored resource, so no content
    is kept here.
    """

    __tablename__ = "idempotency_records"
    # A replay answers with the stored resource: which one, for whom, is an instruction.
    __row_integrity__ = tagged("id", "account_id", "key", "scope", "request_hash", "resource_id")
    __table_args__ = (
        UniqueConstraint("account_id", "key"),
        # Sealing and retention forget a conversation's records by scope (and resource id).
        Index("ix_idempotency_records_scope_resource", "scope", "resource_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    resource_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime]


class ConversationRead(Base):
    """How far one clinician has read a conversation (the console's unread markers)."""

    __tablename__ = "conversation_reads"
    __row_integrity__ = inert("unread markers of one clinician: display only")

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    last_read_seq: Mapped[int]
    read_at: Mapped[datetime]
