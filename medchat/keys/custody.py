"""Key custody by role: personal keypairs, role keypairs and grants (SECURITY-MODEL 3-4, 9-11).

- A personal private key is stored sealed under a key derived from its owner's password
  (scrypt, never the bcrypt hash); its public key carries an integrity tag made with the
  integrity key from ``MEDCHAT_KEY_DIR``, so a public key planted through SQL is refused
  (``medchat.keys.personal_keys``, the half of ``KeyCustody`` it inherits).
- A role private key (physician, compliance archive) is stored once per holder, wrapped to the
  holder's personal public key; the role public key must match a pinned fingerprint before
  anything is sealed to it or a holder's copy is trusted (a successor made at a holder's loss:
  its row tag and fingerprint, ``medchat.keys.successors``).
- Granting needs a caller whose session holds the role key; nothing on the server can grant
  on its own, and an admin never can (admins have no keys).
- Rotation (``medchat.keys.rotation``) needs two orderings the database must enforce, not
  hope for: no wrap is sealed to a role key after the rotation has made a newer one active
  (``hold_sealing_lock``), and no new-key grant outlives a revocation that raced with it
  (``hold_grant_lock``).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from access_control import crypto, hybrid_kem
from access_control.keyring import HeldRoleKey, Keyring
from access_control.password_kdf import Password, ScryptParams
from access_control.pins import RolePins
from medchat.db import rows_changed
from medchat.errors import KeyIntegrityFailure, KeysNotInitialized
from medchat.keys.personal_keys import (  # the constants: re-exported for their importers
    _PERSONAL_AAD,  # noqa: F401
    PERSONAL_PURPOSE,  # noqa: F401
    PERSONAL_VERSION,  # noqa: F401
    RETIRED_PURPOSE,  # noqa: F401
    PersonalKeys,
)
from medchat.keys.successors import appoint_successor
from medchat.models import (
    KeyReaderRemoval,
    RoleKey,
    RoleKeyGrant,
    RoleKeyRotation,
    RoleKeyStatus,
)


class KeyCustody(PersonalKeys):
    """Creates, opens, verifies and grants keys inside the caller's transaction."""

    def __init__(
        self,
        session: Session,
        *,
        integrity_key: bytes,
        pins: RolePins,
        scrypt: ScryptParams,
        now: datetime,
    ) -> None:
        super().__init__(session, integrity_key=integrity_key, scrypt=scrypt, now=now)
        self.pins = pins

    # -- role keys ---------------------------------------------------------------------------

    def role_keys(self, role: str, *statuses: RoleKeyStatus) -> list[RoleKey]:
        statement = select(RoleKey).where(RoleKey.role == role).order_by(RoleKey.version)
        if statuses:
            statement = statement.where(RoleKey.status.in_(list(statuses)))
        return list(self.session.scalars(statement))

    def active_role_key(self, role: str) -> RoleKey:
        """The role key new wraps are sealed to, checked against the deployment's pins.

        One key per role is active (a new one is pending until it is made active). Several
        active rows were written around the service, and which one a query returns first is
        the database's choice, so that is refused rather than resolved.

        The caller's transaction holds the role's sealing lock (shared) until it commits, so a
        rotation activating a newer key waits for every wrap sealed to this one to be written.
        """
        self.hold_sealing_lock(role, exclusive=False)
        rows = self.role_keys(role, RoleKeyStatus.ACTIVE)
        if not rows:
            raise KeysNotInitialized
        if len(rows) > 1:
            raise KeyIntegrityFailure(f"More than one {role} role key is active.")
        self.require_pinned(rows[0])
        return rows[0]

    def require_pinned(self, row: RoleKey) -> None:
        fingerprint = hybrid_kem.public_key_fingerprint(row.public_key)
        if fingerprint != row.fingerprint:
            raise KeyIntegrityFailure(f"The {row.role} role key does not match its fingerprint.")
        self.pins.require_pinned(row.role, fingerprint)

    def require_trusted(self, row: RoleKey) -> None:
        """``require_pinned``, except for a successor (``medchat.keys.successors``): never
        pinned, trusted on its row tag (checked as it loaded) and its fingerprint."""
        if row.status != RoleKeyStatus.SUCCESSOR:
            self.require_pinned(row)
        elif hybrid_kem.public_key_fingerprint(row.public_key) != row.fingerprint:
            raise KeyIntegrityFailure(f"The {row.role} role key does not match its fingerprint.")

    def is_pinned(self, row: RoleKey) -> bool:
        """The key matches its fingerprint and the deployment pins it (no exception)."""
        fingerprint = hybrid_kem.public_key_fingerprint(row.public_key)
        return fingerprint == row.fingerprint and self.pins.is_pinned(row.role, fingerprint)

    def awaiting_pin(self, row: RoleKey) -> bool:
        """A rotation's new key that the operator has yet to add to ``MEDCHAT_ROLE_KEY_PINS``.

        Only there can a pending key be legitimately unpinned (the pin file is written before
        the key exists). Nothing is sealed to it and it cannot become active unpinned, so
        sign-in and start-up leave it out instead of refusing; any other unpinned key is
        still refused, so a key planted through SQL stays loud.
        """
        if row.status != RoleKeyStatus.PENDING or not self.pins.fixed or self.is_pinned(row):
            return False
        rotating = select(RoleKeyRotation.id).where(
            RoleKeyRotation.to_key_id == row.id, RoleKeyRotation.finished_at.is_(None)
        )
        return self.session.scalar(rotating) is not None

    def retired_since_listed(self, row: RoleKey) -> bool:
        """A rotation commits a key's retirement, then unpins it. A reader that listed the key
        as not retired just before that commit meets it unpinned: it is retired, not planted.
        A new statement sees the commit (the row as loaded would not); a key the database
        still calls live stays refused."""
        status = self.session.scalar(select(RoleKey.status).where(RoleKey.id == row.id))
        return status == RoleKeyStatus.RETIRED

    def hold_sealing_lock(self, role: str, *, exclusive: bool) -> None:
        """Order "read the active key, seal to it" against a rotation's activation.

        Sealers take the lock shared (``active_role_key``); the activation takes it exclusive,
        so it waits until every transaction that read the old key as active has committed its
        wraps, and every later transaction reads the new key. Without it a conversation
        created across the activation could commit a wrap to the old key after the rotation
        checked that none is left, and lose its physician (or archive) copy at retirement.
        PostgreSQL: a transaction-scoped advisory lock, released at commit. SQLite needs none:
        every unit of work takes the database write lock at BEGIN (``medchat.db``).
        """
        self._advisory_lock("role-key-sealing", role, exclusive=exclusive)

    def hold_grant_lock(self, role: str) -> None:
        """Serialise revocations with a rotation handing the new key to the current holders.

        Otherwise a rotation that read a colleague's old grant just before a revocation
        deleted it would seal the new key to that colleague after the revocation.
        """
        self._advisory_lock("role-key-grants", role, exclusive=True)

    def _advisory_lock(self, purpose: str, role: str, *, exclusive: bool) -> None:
        if self.session.get_bind().dialect.name != "postgresql":
            return
        label = hashlib.sha256(f"medchat/{purpose}/{role}".encode()).digest()
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        self.session.execute(
            text(f"SELECT {function}(:key)"),
            {"key": int.from_bytes(label[:8], "big", signed=True)},
        )

    def create_role_key(
        self, role: str, status: RoleKeyStatus
    ) -> tuple[RoleKey, hybrid_kem.PrivateKeyHandle]:
        """A new role keypair (the caller pins it and grants it before anyone relies on it)."""
        versions = [row.version for row in self.role_keys(role)]
        handle = hybrid_kem.generate_kem_keypair()
        row = RoleKey(
            id=uuid.uuid4(),
            role=role,
            version=max(versions, default=0) + 1,
            key_id=handle.key_id,
            public_key=handle.public_key_bytes,
            fingerprint=hybrid_kem.public_key_fingerprint(handle.public_key_bytes),
            status=status,
            created_at=self.now,
            activated_at=self.now if status == RoleKeyStatus.ACTIVE else None,
        )
        self.session.add(row)
        self.session.flush()
        return row, handle

    def grant(
        self,
        role_key: RoleKey,
        role_private: hybrid_kem.PrivateKeyHandle,
        account_id: uuid.UUID,
        *,
        granted_by: uuid.UUID | None,
        require_pin: bool = True,
    ) -> str:
        """Seal a role private key to a holder's verified public key; return its fingerprint.

        Raises ``KeyIntegrityFailure`` if the holder's key fails its tag or the role key its
        pin: nothing is sealed then. ``require_pin=False`` is for one case only: a rotation's
        pending key under environment pins, sealed to the rotation's starter so that it
        survives until the operator has pinned it (nothing is sealed *to* a pending key, and
        sign-in leaves it out while it is unpinned).
        """
        if require_pin:
            self.require_trusted(role_key)
        elif hybrid_kem.public_key_fingerprint(role_key.public_key) != role_key.fingerprint:
            raise KeyIntegrityFailure(
                f"The {role_key.role} role key does not match its fingerprint."
            )
        if role_private.public_key_bytes != role_key.public_key:
            raise KeyIntegrityFailure("The held role key does not match the stored role key.")
        holder = self.verified_personal_key(account_id)
        wrap = hybrid_kem.wrap_key(
            holder.public_key,
            role_private.private_bytes_for_storage(),
            recipient_id=account_id,
            context_id=role_key.id,
            purpose=hybrid_kem.PURPOSE_ROLE_KEY,
        )
        self.session.execute(
            delete(RoleKeyGrant).where(
                RoleKeyGrant.role_key_id == role_key.id, RoleKeyGrant.account_id == account_id
            )
        )
        self.session.add(
            RoleKeyGrant(
                role_key_id=role_key.id,
                account_id=account_id,
                wrap=wrap,
                granted_by=granted_by,
                created_at=self.now,
            )
        )
        self.session.flush()
        return hybrid_kem.public_key_fingerprint(holder.public_key)

    def revoke_grants(self, account_id: uuid.UUID, role: str | None = None) -> int:
        """Delete the account's copies of role keys (of one role, or all)."""
        for each in sorted([role] if role is not None else ("archive", "physician")):
            self.hold_grant_lock(each)
        statement = delete(RoleKeyGrant).where(RoleKeyGrant.account_id == account_id)
        if role is not None:
            ids = select(RoleKey.id).where(RoleKey.role == role)
            statement = statement.where(RoleKeyGrant.role_key_id.in_(ids))
        return rows_changed(self.session.execute(statement))

    def mark_rotation_due(
        self, role: str, reason: str, *, lost: uuid.UUID | None = None
    ) -> list[RoleKey]:
        """Flag the role's active key for rotation because a holder lost access.

        SECURITY-MODEL 11: deleting a grant stops the live copy, but a database copy taken
        earlier plus that holder's password still opens the key, so every loss of access
        (grant revoked, account disabled, staff reset) schedules a rotation. The earliest
        mark and its reason are kept: the rotation has been due since then. Returns the
        rows marked (none before ``keys init``). The one place this is decided.

        Each loss is also recorded as a ``KeyReaderRemoval``: every conversation's key epoch
        begun before it is not sealed to again (``medchat.keys.epochs``), so whoever kept
        conversation keys reads nothing written from now on. And a successor role key is
        made for the remaining holders (``lost``, the account that lost it, left out): new
        epochs are wrapped to it, never to the key the leaver held
        (``medchat.keys.successors``). The rotation re-seals the old wraps and retires both
        (its deadline: ``medchat.keys.rotation_deadline``).
        """
        # A pending key is marked too: a rotation under way may already have sealed its new
        # key to the holder who just lost access, so finishing it must not look like a cure.
        rows = self.role_keys(role, RoleKeyStatus.ACTIVE, RoleKeyStatus.PENDING)
        for row in rows:
            if row.rotation_due_at is None:
                row.rotation_due_at = self.now
                row.rotation_reason = reason[:64]
        if rows:
            self.session.add(KeyReaderRemoval(role=role, reason=reason[:64], created_at=self.now))
            self.session.flush()
            appoint_successor(self.session, self, role, reason, lost=lost)
        self.session.flush()
        return rows

    def granted_roles(self, account_id: uuid.UUID) -> list[str]:
        """The roles whose keys (any version) the account holds a copy of."""
        return sorted(
            set(
                self.session.scalars(
                    select(RoleKey.role)
                    .join(RoleKeyGrant, RoleKeyGrant.role_key_id == RoleKey.id)
                    .where(RoleKeyGrant.account_id == account_id)
                )
            )
        )

    def holders(self, role_key_id: uuid.UUID) -> list[uuid.UUID]:
        return list(
            self.session.scalars(
                select(RoleKeyGrant.account_id).where(RoleKeyGrant.role_key_id == role_key_id)
            )
        )

    def open_grants(
        self, account_id: uuid.UUID, personal: hybrid_kem.PrivateKeyHandle
    ) -> tuple[HeldRoleKey, ...]:
        """Open every non-retired role key granted to the account (pinned ones only)."""
        rows = self.session.execute(
            select(RoleKeyGrant, RoleKey)
            .join(RoleKey, RoleKey.id == RoleKeyGrant.role_key_id)
            .where(RoleKeyGrant.account_id == account_id, RoleKey.status != RoleKeyStatus.RETIRED)
            .order_by(RoleKey.role, RoleKey.version)
        ).all()
        held = []
        for grant, role_key in rows:
            if self.awaiting_pin(role_key):
                continue
            try:
                self.require_trusted(role_key)
            except KeyIntegrityFailure:
                if self.retired_since_listed(role_key):
                    continue  # a rotation retired it (and then unpinned it) meanwhile
                raise
            try:
                seed = hybrid_kem.unwrap_key(
                    personal,
                    grant.wrap,
                    recipient_id=account_id,
                    context_id=role_key.id,
                    purpose=hybrid_kem.PURPOSE_ROLE_KEY,
                )
                handle = hybrid_kem.load_private_key(seed)
            except crypto.DecryptionFailed:
                # A grant sealed to an older personal key (reset): the colleague re-grants.
                continue
            if handle.public_key_bytes != role_key.public_key:
                raise KeyIntegrityFailure(f"A granted {role_key.role} key does not match.")
            held.append(HeldRoleKey(role_key.id, role_key.role, handle))
        return tuple(held)

    def holds_current(self, keyring: Keyring, role: str) -> bool:
        """Whether the session holds a version of ``role``'s key that is not retired.

        Its grant was opened at sign-in (the keyring holds it), or, for a session opened
        before a rotation that has since retired the version it holds, the session's own
        personal key opens a current grant now, exactly as signing in again would (as
        ``ConversationKeys.open_key`` does). An account never granted the key holds nothing.
        """
        held = [each.role_key_id for each in keyring.role_keys(role)]
        if held and self.session.scalar(
            select(RoleKey.id)
            .where(
                RoleKey.id.in_(held), RoleKey.role == role, RoleKey.status != RoleKeyStatus.RETIRED
            )
            .limit(1)
        ):
            return True
        if keyring.personal is None:
            return False
        return any(
            each.role == role for each in self.open_grants(keyring.account_id, keyring.personal)
        )

    def open_keyring(self, account_id: uuid.UUID, password: str | Password) -> Keyring:
        """Everything the account may open, for sealing into its new session."""
        if self.personal_key(account_id) is None:
            return Keyring(account_id)
        row, personal = self.open_personal_key(account_id, password)
        return Keyring(account_id, personal, row.id, self.open_grants(account_id, personal))
