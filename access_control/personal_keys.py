"""Personal keypairs: sealed under their owner's password, public keys integrity-tagged.

A personal private key is stored sealed under a key derived from its owner's password (scrypt,
never the bcrypt hash); its public key carries an integrity tag made with the integrity key
from ``MEDCHAT_KEY_DIR``, so a public key planted through SQL is refused. The personal half of
``access_control.keys.KeyCustody``, which adds role keys and grants on top of these.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from access_control import crypto, hybrid_kem
from access_control.password_kdf import ScryptParams, open_with_password, seal_with_password
from medchat.errors import KeyIntegrityFailure, NotFound
from medchat.models import PersonalKey

PERSONAL_PURPOSE = "personal"
RETIRED_PURPOSE = "personal-retired"
PERSONAL_VERSION = 1
_PERSONAL_AAD = "medchat/personal-key/v1"


class PersonalKeys:
    """Creates, verifies, opens and re-seals personal keys inside the caller's transaction."""

    def __init__(
        self, session: Session, *, integrity_key: bytes, scrypt: ScryptParams, now: datetime
    ) -> None:
        self.session = session
        self._integrity_key = integrity_key
        self._scrypt = scrypt
        self.now = now

    def _tag(
        self,
        account_id: uuid.UUID,
        key_id: bytes,
        public_key: bytes,
        *,
        purpose: str = PERSONAL_PURPOSE,
    ) -> bytes:
        return crypto.key_integrity_tag(
            self._integrity_key,
            owner_id=account_id,
            key_id=key_id,
            key_bytes=public_key,
            purpose=purpose,
            version=PERSONAL_VERSION,
        )

    def create_personal_key(self, account_id: uuid.UUID, password: str) -> PersonalKey:
        """A new keypair for the account, sealed under its password; earlier keys retire.

        Retiring re-tags the old key for the purpose "retired": a database writer who sets
        ``retired_at`` back to NULL gets a key whose tag no longer verifies as a current one.
        (Replaying a copy of the row taken before the retirement is a database rollback; see
        docs/security.md.)
        """
        for old in self.session.scalars(
            select(PersonalKey).where(
                PersonalKey.account_id == account_id, PersonalKey.retired_at.is_(None)
            )
        ):
            old.retired_at = self.now
            old.integrity_tag = self._tag(
                account_id, old.key_id, old.public_key, purpose=RETIRED_PURPOSE
            )
        handle = hybrid_kem.generate_kem_keypair()
        row = PersonalKey(
            id=uuid.uuid4(),
            account_id=account_id,
            key_id=handle.key_id,
            public_key=handle.public_key_bytes,
            integrity_tag=self._tag(account_id, handle.key_id, handle.public_key_bytes),
            version=PERSONAL_VERSION,
            created_at=self.now,
        )
        row.private_key_ciphertext = seal_with_password(
            handle.private_bytes_for_storage(),
            password,
            aad=crypto.associated_data(_PERSONAL_AAD, account_id, row.id),
            params=self._scrypt,
        )
        self.session.add(row)
        self.session.flush()
        return row

    def spend_personal_key_work(self, password: str) -> None:
        """Do what ``create_personal_key`` costs (a keypair generated, then sealed under the
        password with scrypt) and keep nothing: registering a taken address must take as long
        as registering a new one, or the time tells who is a member."""
        handle = hybrid_kem.generate_kem_keypair()
        seal_with_password(
            handle.private_bytes_for_storage(),
            password,
            aad=crypto.associated_data(_PERSONAL_AAD, uuid.uuid4(), uuid.uuid4()),
            params=self._scrypt,
        )

    def personal_key(self, account_id: uuid.UUID) -> PersonalKey | None:
        return self.session.scalar(
            select(PersonalKey).where(
                PersonalKey.account_id == account_id, PersonalKey.retired_at.is_(None)
            )
        )

    def verified_personal_key(self, account_id: uuid.UUID) -> PersonalKey:
        """The account's public key, only if its integrity tag verifies (else refuse)."""
        row = self.personal_key(account_id)
        if row is None:
            raise NotFound("This account has no key yet.")
        try:
            crypto.verify_key_integrity(
                self._integrity_key,
                row.integrity_tag,
                owner_id=account_id,
                key_id=row.key_id,
                key_bytes=row.public_key,
                purpose=PERSONAL_PURPOSE,
                version=row.version,
            )
            if hybrid_kem.public_key_id(row.public_key) != row.key_id:
                raise crypto.IntegrityCheckFailed
        except crypto.IntegrityCheckFailed as exc:
            raise KeyIntegrityFailure(
                "This account's public key failed its integrity check; nothing was sealed to it."
            ) from exc
        return row

    def open_personal_key(
        self, account_id: uuid.UUID, password: str
    ) -> tuple[PersonalKey, hybrid_kem.PrivateKeyHandle]:
        """Open the account's private key with its (already verified) password."""
        row = self.verified_personal_key(account_id)
        try:
            seed = open_with_password(
                row.private_key_ciphertext,
                password,
                aad=crypto.associated_data(_PERSONAL_AAD, account_id, row.id),
            )
            handle = hybrid_kem.load_private_key(seed)
        except crypto.DecryptionFailed as exc:
            raise KeyIntegrityFailure("The stored private key does not open.") from exc
        if handle.public_key_bytes != row.public_key:
            raise KeyIntegrityFailure("The stored private key does not match its public key.")
        return row, handle

    def reseal_personal_key(self, account_id: uuid.UUID, current: str, new: str) -> None:
        """Password change: the same keypair, sealed under the new password."""
        row, handle = self.open_personal_key(account_id, current)
        row.private_key_ciphertext = seal_with_password(
            handle.private_bytes_for_storage(),
            new,
            aad=crypto.associated_data(_PERSONAL_AAD, account_id, row.id),
            params=self._scrypt,
        )
