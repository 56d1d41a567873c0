"""Bearer access tokens and rotating refresh tokens, stored only as hashes; and the columns
every mailed single-use token shares (``SingleUseToken``).

A login starts a *family*: its access and refresh tokens share ``family_id``. Refresh tokens
rotate; a refresh token that was already used is kept (without secrets) until the family
expires, so its reuse is recognised and revokes the whole family. Revocation deletes rows:
nothing on the server can use a token afterwards.

``sealed_keys`` is the per-session secret of SECURITY-MODEL "Sessions carry the secret": the
opened private keys encrypted under a key derived from the token, which only the client holds,
and the session-keyring server key (``access_control.keyring``). Expired rows are deleted
(``medchat.services.token_purge``), not merely refused.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from medchat.db import Base, new_id
from medchat.models.integrity import TaggedRow, tagged


class TokenKind(enum.StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"
    CONSOLE = "console"
    # Password accepted, second factor not yet: opens nothing but the TOTP step.
    CONSOLE_PENDING = "console_pending"


class AuthToken(TaggedRow, Base):
    __tablename__ = "auth_tokens"
    # Whose session, of which kind, past which factor, until when. ``sealed_keys`` is sealed
    # with the row id and account as associated data; ``last_used_at``, ``device`` and
    # ``network`` only inform (the sign-in list, ``medchat.identity.sign_ins``).
    __row_integrity__ = tagged(
        "id",
        "account_id",
        "family_id",
        "kind",
        "token_hash",
        "mfa_verified",
        "expires_at",
        "family_expires_at",
        "used_at",
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    mfa_verified: Mapped[bool]
    created_at: Mapped[datetime]
    # Indexed for the purge of expired rows (``medchat.services.token_purge``).
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # Absolute end of the family: rotation never extends a login past it.
    family_expires_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    used_at: Mapped[datetime | None]
    sealed_keys: Mapped[bytes | None] = mapped_column(LargeBinary)
    # A label from a fixed vocabulary, never the User-Agent; a keyed MAC of the sign-in
    # address's network, never the address (migration 0017).
    device: Mapped[str | None] = mapped_column(String(64))
    network: Mapped[bytes | None] = mapped_column(LargeBinary(32))


class SingleUseToken(TaggedRow):
    """The columns and the tag of a token mailed or handed to one account, good once, until
    ``expires_at``: enrollment (``EnrollmentToken``), password reset (``PasswordResetToken``)
    and e-mail change (``EmailChangeToken``, which adds the sealed new address).

    One table each, not one shared table: a row's tag covers its table name, so the kind of a
    token is bound by where it stands and a writer cannot turn one kind into another; merging
    would re-tag every row with the key outside the database. Issuing, finding, spending and
    the liveness rule are ``medchat.identity.single_use``; the purge is ``token_purge``.
    """

    # ``used_at`` is left out: clearing it replays only a token the writer would have to know.
    __row_integrity__ = tagged("id", "account_id", "token_hash", "expires_at")

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
