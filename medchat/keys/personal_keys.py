"""Personal keypairs: sealed under their owner's password, public keys integrity-tagged.

A personal private key is stored sealed under a key derived from its owner's password (scrypt,
never the bcrypt hash); its public key carries an integrity tag made with the integrity key
from ``MEDCHAT_KEY_DIR``, so a public key planted through SQL is refused. The personal half of
``medchat.keys.custody.KeyCustody``, which adds role keys and grants on top of these.

A key retired by a reset or re-enrollment is deleted once no wrap and no grant is sealed to
it (``forget_retired``): its blob opens with the *old* password, which a thief may know or
guess, and kept forever it would let that password plus any later database copy open it.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from access_control import crypto, hybrid_kem
from access_control.password_kdf import (
    Password,
    ScryptParams,
    open_with_password,
    seal_with_password,
    sealed_under,
    stretch_for_blob,
)
from medchat import audit
from medchat.errors import KeyIntegrityFailure, NotFound
from medchat.models import ConversationKeyWrap, PersonalKey, RewrapRequest, RoleKeyGrant

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

    def create_personal_key(self, account_id: uuid.UUID, password: str | Password) -> PersonalKey:
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

    def spend_personal_key_work(self, password: str | Password) -> None:
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
        self, account_id: uuid.UUID, password: str | Password, *, upgrade: bool = True
    ) -> tuple[PersonalKey, hybrid_kem.PrivateKeyHandle]:
        """Open the account's private key with its (already verified) password.

        A key sealed with another scrypt run than the account's password hash (an old blob,
        or one of another cost) is sealed again with the hash's run, so the next sign-in
        costs one scrypt: ``password.account`` is that run once the hash has verified.
        """
        password = Password.of(password)
        row = self.verified_personal_key(account_id)
        aad = crypto.associated_data(_PERSONAL_AAD, account_id, row.id)
        try:
            seed = open_with_password(row.private_key_ciphertext, password, aad=aad)
            handle = hybrid_kem.load_private_key(seed)
        except crypto.DecryptionFailed as exc:
            raise KeyIntegrityFailure("The stored private key does not open.") from exc
        if handle.public_key_bytes != row.public_key:
            raise KeyIntegrityFailure("The stored private key does not match its public key.")
        target = password.account
        if (
            upgrade
            and target is not None
            and target.params == self._scrypt
            and not sealed_under(row.private_key_ciphertext, target)
        ):
            row.private_key_ciphertext = seal_with_password(
                seed, password, aad=aad, params=self._scrypt
            )
            audit.record(
                self.session,
                "key.personal_reseal",
                target_type="account",
                target_id=account_id,
                details={"reason": "password_hash_upgrade"},
            )
        return row, handle

    def personal_key_runs(self, account_id: uuid.UUID, password: Password) -> Password:
        """The scrypt runs that open the account's key, done now, nothing opened.

        For the console's password step: what it carries to the TOTP step, where the key is
        opened (``medchat.identity.console_sessions``). The result knows no password text.
        """
        runs = [password.account] if password.account is not None else []
        row = self.personal_key(account_id)
        if row is not None:
            # A malformed blob is left out: opening it at the TOTP step refuses it.
            with contextlib.suppress(crypto.DecryptionFailed):
                runs.append(stretch_for_blob(row.private_key_ciphertext, password))
        carried = Password(None, runs)
        carried.account = password.account
        return carried

    def reseal_personal_key(
        self, account_id: uuid.UUID, current: str | Password, new: str | Password
    ) -> None:
        """Password change: the same keypair, sealed under the new password."""
        row, handle = self.open_personal_key(account_id, current, upgrade=False)
        row.private_key_ciphertext = seal_with_password(
            handle.private_bytes_for_storage(),
            new,
            aad=crypto.associated_data(_PERSONAL_AAD, account_id, row.id),
            params=self._scrypt,
        )

    def forget_retired(
        self,
        account_id: uuid.UUID | None = None,
        *,
        after: uuid.UUID | None = None,
        limit: int = 100,
    ) -> tuple[int, uuid.UUID | None]:
        """Delete retired keys (of one account, or any) that nothing is sealed to any more.

        Looks at up to ``limit`` retired rows after the id ``after`` (``unused_retired``);
        returns how many it deleted and where the walk goes on (None: done). Each deletion is
        audited ``key.personal_forget``.
        """
        rows, last = self.unused_retired(account_id, after=after, limit=limit, lock=True)
        for row in rows:
            # A re-wrap request naming it was superseded by the later reset that retired it.
            self.session.execute(
                delete(RewrapRequest).where(RewrapRequest.personal_key_id == row.id)
            )
            self.session.delete(row)
            audit.record(
                self.session,
                "key.personal_forget",
                target_type="account",
                target_id=row.account_id,
                details={"key_id": row.key_id.hex()},
            )
        self.session.flush()
        return len(rows), last

    def unused_retired(
        self,
        account_id: uuid.UUID | None = None,
        *,
        after: uuid.UUID | None = None,
        limit: int = 100,
        lock: bool = False,
    ) -> tuple[list[PersonalKey], uuid.UUID | None]:
        """Retired keys no conversation wrap and no role-key grant is sealed to any more.

        A key something is still sealed to stays (its re-wrap or re-grant is yet to come); so
        does a row whose tag does not say "retired" (a current key with ``retired_at`` set
        through SQL is not the server's to delete). Of up to ``limit`` retired rows after the
        id ``after``, returns those that may go, and the last id looked at when there may be
        more (else None). ``lock``: on PostgreSQL the rows are taken ``FOR UPDATE SKIP
        LOCKED``, so sweeps on several hosts never delete one row twice.
        """
        named = (
            select(ConversationKeyWrap.id)
            .where(ConversationKeyWrap.recipient_key_id == PersonalKey.key_id)
            .exists()
        )
        statement = select(PersonalKey).where(PersonalKey.retired_at.is_not(None), ~named)
        if account_id is not None:
            statement = statement.where(PersonalKey.account_id == account_id)
        if after is not None:
            statement = statement.where(PersonalKey.id > after)
        statement = statement.order_by(PersonalKey.id).limit(limit)
        if lock and self.session.get_bind().dialect.name == "postgresql":
            statement = statement.with_for_update(skip_locked=True, of=PersonalKey)
        rows = list(self.session.scalars(statement))
        unused = [row for row in rows if self._tag_says_retired(row) and not self._granted_to(row)]
        return unused, (rows[-1].id if len(rows) == limit else None)

    def _tag_says_retired(self, row: PersonalKey) -> bool:
        try:
            crypto.verify_key_integrity(
                self._integrity_key,
                row.integrity_tag,
                owner_id=row.account_id,
                key_id=row.key_id,
                key_bytes=row.public_key,
                purpose=RETIRED_PURPOSE,
                version=row.version,
            )
        except crypto.IntegrityCheckFailed:
            return False
        return True

    def _granted_to(self, row: PersonalKey) -> bool:
        """Whether a role-key grant of the account is still sealed to this key."""
        for wrap in self.session.scalars(
            select(RoleKeyGrant.wrap).where(RoleKeyGrant.account_id == row.account_id)
        ):
            try:
                if hybrid_kem.wrap_key_id(wrap) == row.key_id:
                    return True
            except crypto.DecryptionFailed:
                continue  # not a wrap at all: opens nothing
        return False
