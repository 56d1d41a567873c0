"""Restriction of processing (GDPR Art. 18), at a member's request or pending an objection.

One row per restriction, kept after it is lifted: the history is the record the member's
export shows. The current restriction is the member's row with ``lifted_at`` NULL. A row
changes what the server does (it freezes the member's conversations: no new content, no
clinician read but to answer an open question), so it is tagged: a database writer cannot
plant one, nor lift one by editing ``lifted_at`` (``docs/security.md``, "Row tags").
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from medchat.db import Base, new_id
from medchat.models.integrity import TaggedRow, tagged


class RestrictionGround(StrEnum):
    #: The member asked (Art. 18(1)(a)-(c): contested accuracy, unlawful processing, claims).
    MEMBER_REQUEST = "member_request"
    #: The member objected (Art. 18(1)(d)): restricted until the objection is settled.
    OBJECTION = "objection"


class ProcessingRestriction(TaggedRow, Base):
    __tablename__ = "processing_restrictions"
    __row_integrity__ = tagged("id", "account_id", "ground", "restricted_at", "lifted_at")

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    ground: Mapped[str] = mapped_column(String(16))
    #: ``member`` or ``dpo`` (acting on a request received by mail, with ``ticket``).
    requested_by: Mapped[str] = mapped_column(String(16))
    ticket: Mapped[str | None] = mapped_column(String(64))
    restricted_at: Mapped[datetime]
    lifted_at: Mapped[datetime | None]
    lifted_by: Mapped[str | None] = mapped_column(String(16))
