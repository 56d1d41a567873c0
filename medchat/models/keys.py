"""Key custody tables: personal keypairs, role keypairs and the grants that hand them out.

Private keys are stored only sealed: a personal private key under a key derived from its
owner's password (scrypt), a role private key once per holder, wrapped (HPKE) to that holder's
personal public key. Personal public keys carry an integrity tag made with a key outside the
database; role public keys are pinned by fingerprint in the deployment's configuration.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from medchat.db import Base, new_id
from medchat.models.integrity import TaggedRow, covered, tagged


class KeyRole(enum.StrEnum):
    """The two role keys: doctors open live conversations, compliance opens the archive."""

    PHYSICIAN = "physician"
    ARCHIVE = "archive"


class RoleKeyStatus(enum.StrEnum):
    """``pending`` keys are pinned and granted but not sealed to yet; ``active`` is sealed
    to; ``retiring`` still opens wraps while a rotation re-seals them; ``retired`` opens
    nothing and is unpinned. A ``successor`` is made when a holder loses the key and takes
    the new key epochs in the active key's place until the rotation retires it (trusted on
    its row tag and fingerprint, never pinned: ``medchat.keys.successors``)."""

    PENDING = "pending"
    ACTIVE = "active"
    SUCCESSOR = "successor"
    RETIRING = "retiring"
    RETIRED = "retired"


class PersonalKey(Base):
    __tablename__ = "personal_keys"
    __row_integrity__ = covered(
        "integrity_tag (integrity key) over account, key id, public key, purpose (current or"
        " retired) and version; the private key is sealed under the password with its row id"
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    key_id: Mapped[bytes] = mapped_column(LargeBinary(8))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    private_key_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    integrity_tag: Mapped[bytes] = mapped_column(LargeBinary(32))
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]


class RoleKey(TaggedRow, Base):
    __tablename__ = "role_keys"
    # Which key a role seals to and opens with, and in which state of a rotation.
    __row_integrity__ = tagged(
        "id", "role", "version", "key_id", "public_key", "fingerprint", "status"
    )
    __table_args__ = (UniqueConstraint("role", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    role: Mapped[str] = mapped_column(String(16))
    version: Mapped[int]
    key_id: Mapped[bytes] = mapped_column(LargeBinary(8))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    activated_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]
    # Set when a holder lost access (grant revoked, account disabled): rotate soon.
    rotation_due_at: Mapped[datetime | None]
    rotation_reason: Mapped[str | None] = mapped_column(String(64))


class RoleKeyGrant(TaggedRow, Base):
    """One holder's copy of a role private key, wrapped to their personal public key."""

    __tablename__ = "role_key_grants"
    # Who holds which role key: a rotation seals the new key to these holders.
    __row_integrity__ = tagged(
        "id", "role_key_id", "account_id", "wrap", "granted_by", "created_at"
    )
    __table_args__ = (UniqueConstraint("role_key_id", "account_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # Looked up through the unique constraint above, which it leads.
    role_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("role_keys.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    wrap: Mapped[bytes] = mapped_column(LargeBinary)
    granted_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]
