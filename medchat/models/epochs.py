"""Key epochs: a conversation's DEK changes when a reader loses access (issue 18, item 2).

A conversation's content is sealed under one DEK per **epoch**. The first epoch starts with the
conversation; a new one starts, at the next seal, once the current epoch was begun before an
event that removed a reader: a role-key rotation made another key active, the member's
personal key changed (password reset), or a holder of a role key lost it (revoked, disabled,
reset: ``KeyReaderRemoval``). Old epochs stay, wrapped like the current one, so history reads
on; each ciphertext's envelope names the key that sealed it (``medchat.keys.sealing``). What starts
and opens epochs: ``medchat.keys.epochs``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from medchat.db import Base, new_id
from medchat.models.integrity import TaggedRow, inert, tagged


class ConversationKeyEpoch(TaggedRow, Base):
    """One DEK of a conversation: its commitment and what it was sealed to when it began.

    The row tells the server which DEK new content is sealed under (the highest epoch, when it
    is fresh) and which commitment checks each epoch's unwrap, so it is tagged over all of it.
    Epoch 1 of a conversation created before key epochs existed has no row until ``medchat
    keys migrate-epochs`` writes one; until then the conversation row's own commitment and
    key-set tag stand for it (``medchat.keys.epochs``).
    """

    __tablename__ = "conversation_key_epochs"
    __row_integrity__ = tagged(
        "id",
        "conversation_id",
        "epoch",
        "key_commitment",
        "member_key_id",
        "physician_version",
        "archive_version",
        "removals",
        "created_at",
    )
    __table_args__ = (UniqueConstraint("conversation_id", "epoch"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    #: 1, 2, ...: wraps name it (``conversation_key_wraps.epoch``).
    epoch: Mapped[int]
    #: HMAC of this epoch's DEK (``crypto.key_commitment``), checked after every unwrap.
    key_commitment: Mapped[bytes] = mapped_column(LargeBinary(32))
    # What the DEK was sealed to when the epoch began: the member's personal key id and the
    # active role key versions, and how many reader removals had been recorded. NULL and 0
    # for an epoch migrated from before key epochs existed: it counts as begun before all.
    member_key_id: Mapped[bytes | None] = mapped_column(LargeBinary(8))
    physician_version: Mapped[int]
    archive_version: Mapped[int]
    removals: Mapped[int]
    created_at: Mapped[datetime]


class KeyReaderRemoval(Base):
    """A holder of a role key lost it (grant revoked, account disabled, staff reset).

    Written by ``KeyCustody.mark_rotation_due``, the one place every such loss passes. Only
    counted: an epoch begun when fewer removals were recorded is not sealed to again.
    """

    __tablename__ = "key_reader_removals"
    __row_integrity__ = inert(
        "only counted: a planted row makes the next seal start a key epoch early (a new DEK"
        " sealed to the verified current keys); a deleted one can delay that only until the"
        " role key rotates, which starts one whatever this table holds"
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    role: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
