"""Accounts, member profiles, enrollment tokens and recovery codes.

Personal data that a database dump must not reveal is stored only as ciphertext
(``*_ciphertext``, sealed under the profile key with the row id and field as associated data)
and e-mail addresses are found through ``email_index``, a keyed blind index.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from medchat.db import Base, new_id
from medchat.models.integrity import TaggedRow, inert, tagged
from medchat.models.tokens import SingleUseToken


class AccountStatus(enum.StrEnum):
    """``pending`` until enrollment is confirmed (staff); ``disabled`` is final; ``deleted``
    is a member's erased account: a tombstone naming nobody (``services/account_deletion``)."""

    PENDING = "pending"
    ACTIVE = "active"
    DISABLED = "disabled"
    DELETED = "deleted"


class Account(TaggedRow, Base):
    """A person who signs in. Exactly one role per account (separation of duties)."""

    __tablename__ = "accounts"
    # Who may sign in with what, in which role. Not ``totp_last_step``: a replay counter moved
    # by one atomic UPDATE; setting it back replays only a code the writer would have to know.
    __row_integrity__ = tagged(
        "id",
        "role",
        "status",
        "email_index",
        "password_hash",
        "totp_secret_ciphertext",
        "totp_confirmed_at",
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    role: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.ACTIVE)
    email_index: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    email_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    first_name_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    last_name_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    display_name: Mapped[str | None] = mapped_column(String(100))
    password_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    password_changed_at: Mapped[datetime | None]
    totp_secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_confirmed_at: Mapped[datetime | None]
    # Last accepted TOTP time step: a code is accepted once, even across processes.
    totp_last_step: Mapped[int | None]
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]

    profile: Mapped[MemberProfile | None] = relationship(
        back_populates="account", uselist=False, lazy="joined"
    )

    @property
    def is_active(self) -> bool:
        return self.status == AccountStatus.ACTIVE

    @property
    def has_totp(self) -> bool:
        return self.totp_confirmed_at is not None

    def forget_sign_in_secrets(self) -> None:
        """Clear the password hash and the TOTP seed and state: the account signs in nowhere
        until it enrolls again (staff reset) or ever (account deletion)."""
        self.password_hash = None
        self.totp_secret_ciphertext = None
        self.totp_confirmed_at = None
        self.totp_last_step = None


class MemberProfile(Base):
    """What a member told the insurer about themselves; a clinician sees only a slice."""

    __tablename__ = "member_profiles"
    __row_integrity__ = inert(
        "what a member told about themselves: shown, never decides a seal, grant or sign-in"
    )

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    birth_date_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    sex_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    phone_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    insurance_number_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)

    account: Mapped[Account] = relationship(back_populates="profile")


class EnrollmentToken(SingleUseToken, Base):
    """A one-time, expiring token that lets a staff account set its password and TOTP."""

    __tablename__ = "enrollment_tokens"


class RecoveryCode(TaggedRow, Base):
    """A single-use 2FA recovery code, stored as a hash only."""

    __tablename__ = "recovery_codes"
    __row_integrity__ = tagged("id", "account_id", "code_hash")

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    used_at: Mapped[datetime | None]
