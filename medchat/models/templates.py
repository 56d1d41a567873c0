"""A clinician's canned replies (issue 17, item 5): their own texts, reused in answers.

A template may hold medical text ("for a sprain: rest, ice, ..."), so it is sealed, under a
key only its owner's session can derive (``Keyring.derive_secret`` from the personal private
key): the server, a database copy and the key directory open none. ``personal_key_id`` names
the personal key that sealed it: after a staff reset (a new key pair) the old ones open for
nobody and are not listed.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from medchat.db import Base, new_id
from medchat.models.integrity import covered


class ReplyTemplate(Base):
    __tablename__ = "reply_templates"
    __row_integrity__ = covered(
        "sealed under a key derived from the owner's personal private key, with the template "
        "and its owner in the associated data: a planted or moved row opens for nobody, and "
        "a template is only shown to its owner, never sent by the server"
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    personal_key_id: Mapped[uuid.UUID]
    title: Mapped[bytes] = mapped_column(LargeBinary)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
