"""A clinician's unsent answer to a conversation (issue 17, item 5): one per author and
conversation, saved as they write, gone when they send it, when the conversation is deleted
or destroyed.

A draft may hold medical text, so it is sealed like content: under the conversation's current
DEK, bound to the conversation and its author (``medchat.keys.sealing``). Only its author is
shown it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from medchat.db import Base
from medchat.models.integrity import covered


class ConversationDraft(Base):
    __tablename__ = "conversation_drafts"
    __row_integrity__ = covered(
        "sealed under the conversation's DEK with the conversation and its author in the "
        "associated data: a planted, moved or re-attributed row opens nothing, and a draft "
        "is only ever shown to its author, never sent by the server"
    )

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    author_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    body: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime]
