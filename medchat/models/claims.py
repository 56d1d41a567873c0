"""Who has a waiting question: one clinician's claim on a conversation (issue 17, item 3).

A claim decides who may answer (``medchat.services.claims``), so its row is an instruction
and carries a row tag over who holds which conversation until when and who handed it over: a
database writer can neither plant a claim for an account of their choosing nor stretch or move
one (the row is refused, 409 ``row_integrity_failed``). One row per conversation at most (the
unique constraint is the last word when two clinicians race; the service locks the
conversation first). An expired row is dead: the service treats it as absent and replaces it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from medchat.db import Base, new_id
from medchat.models.integrity import TaggedRow, tagged


class ConversationClaim(TaggedRow, Base):
    __tablename__ = "conversation_claims"
    __row_integrity__ = tagged(
        "id", "conversation_id", "clinician_id", "expires_at", "handed_by", "reason"
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), unique=True
    )
    clinician_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    claimed_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    # Set when a colleague handed the question over, with a reason from a fixed vocabulary
    # (``medchat.services.claims.HANDOFF_REASONS``): never free text, which could hold health
    # data and would have to be sealed and re-sealed like content.
    handed_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL")
    )
    reason: Mapped[str | None] = mapped_column(String(32))
