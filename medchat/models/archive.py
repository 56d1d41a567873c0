"""The sealed archive: an append-only, hash-chained, signed ledger and four-eyes retrievals.

When a member asks for a conversation's deletion, the member and physician wraps of its DEK
are destroyed and a ledger record is appended: the hash of the conversation's ciphertexts and
its metadata, chained to the previous record and signed with the archive-signing key (Ed25519,
private key in ``MEDCHAT_KEY_DIR``). Only the compliance archive wrap remains, so content
opens only through an approved retrieval. Records carry ids, times and counts, never content.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from medchat.db import Base, new_id
from medchat.models.integrity import TaggedRow, covered, tagged


class ArchiveRecord(Base):
    __tablename__ = "archive_records"
    __row_integrity__ = covered(
        "hash-chained ledger, each record signed (Ed25519, archive-signing key) and the head MAC'd"
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    # "sealed" (a conversation entered the archive) or "destroyed" (retention removed the
    # content of an earlier record, named by ``refers_to``): the ledger itself only grows.
    kind: Mapped[str] = mapped_column(String(16))
    refers_to: Mapped[uuid.UUID | None]
    conversation_id: Mapped[uuid.UUID] = mapped_column(index=True)
    # Blind index of the member's e-mail address: compliance finds records without a name.
    member_index: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    message_count: Mapped[int]
    question_at: Mapped[datetime] = mapped_column(index=True)
    sealed_at: Mapped[datetime] = mapped_column(index=True)
    content_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    metadata_json: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    record_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
    signing_key_id: Mapped[str] = mapped_column(String(64))


class RetrievalRequest(TaggedRow, Base):
    """Officer A asks (with a justification), officer B approves, A opens for a limited time."""

    __tablename__ = "retrieval_requests"
    __row_integrity__ = tagged(
        "id",
        "record_id",
        "requested_by",
        "requested_at",
        "approved_by",
        "approved_at",
        "expires_at",
        "status",
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("archive_records.id", ondelete="CASCADE"), index=True
    )
    requested_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    justification_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    requested_at: Mapped[datetime]
    approved_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"))
    approved_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))
