"""Key lifecycle state: password-reset and e-mail-change tokens, the member re-wrap queue,
role-key rotations.

None of these rows holds a secret that opens anything: single-use tokens are stored as hashes, a
re-wrap request only names a conversation and the member's new key (a clinician session does
the re-sealing), and a rotation records its progress so an interrupted run resumes.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from medchat.db import Base, new_id
from medchat.models.integrity import TaggedRow, tagged
from medchat.models.tokens import SingleUseToken


class PasswordResetToken(SingleUseToken, Base):
    """A single-use, 30-minute token mailed to a member who forgot their password."""

    __tablename__ = "password_reset_tokens"


class RewrapRequest(TaggedRow, Base):
    """A member's conversation waiting to be re-sealed to their new personal key.

    After a password reset the member's old key is gone with the old password; a clinician
    session holding the physician role key opens the DEK and seals it to the new key.
    """

    __tablename__ = "rewrap_requests"
    __row_integrity__ = tagged("id", "conversation_id", "member_id", "personal_key_id")
    __table_args__ = (UniqueConstraint("conversation_id", "personal_key_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # Looked up through the unique constraint above, which it leads.
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    member_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    personal_key_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("personal_keys.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime]


class RoleKeyRotation(TaggedRow, Base):
    """One rotation of a role key: from the old version to the new, with a resumable cursor."""

    __tablename__ = "role_key_rotations"
    # Not the cursor or the count: progress only (every run sweeps from the start at the end).
    __row_integrity__ = tagged(
        "id",
        "role",
        "from_key_id",
        "to_key_id",
        "started_by",
        "started_at",
        "activated_at",
        "finished_at",
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    role: Mapped[str] = mapped_column(String(16))
    from_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("role_keys.id"))
    to_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("role_keys.id"))
    started_by: Mapped[uuid.UUID | None]
    started_at: Mapped[datetime]
    activated_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Last conversation id whose wrap was re-sealed: a resumed run starts after it.
    cursor: Mapped[uuid.UUID | None]
    resealed: Mapped[int] = mapped_column(default=0)


class EmailChangeToken(SingleUseToken, Base):
    """A member's pending new e-mail address, waiting for the single-use token mailed to it.

    The address is held only sealed (``new_email_ciphertext``, profile key, the account id and
    the field ``pending_email`` as associated data) until the token confirms it; the token is
    stored as a hash. Tagged: the ciphertext and the token decide which address an account
    takes, so a database writer who plants or edits a row is refused (``used_at`` is left out
    as for reset tokens: clearing it replays only a token the writer would have to know).
    """

    __tablename__ = "email_change_tokens"
    __row_integrity__ = tagged(
        "id", "account_id", "token_hash", "new_email_ciphertext", "expires_at"
    )

    new_email_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
