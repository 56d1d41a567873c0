"""Opened private keys live only inside a session, sealed under the token *and* a server key.

SECURITY-MODEL 5, "Sessions carry the secret, the database does not": at sign-in the server
opens the caller's personal private key (with the password) and the role private keys it was
granted, and stores them sealed beside the token's *hash*. Each request re-opens them from the
token it presents. Deleting the token row (logout, expiry, revocation) leaves nothing on the
server that can open them.

SECURITY-MODEL key hierarchy 10, "Sessions": the sealing key is
``HKDF-SHA256(ikm=token, salt=session-keyring server key, info=v2)``. HKDF's extract step is
HMAC keyed by the salt (RFC 5869 2.2), so the key needs both halves: the token, which only the
client holds, and the server key, which lives in ``MEDCHAT_KEY_DIR`` and never in the
database. A database copy plus a captured token opens nothing; the key directory plus a
database copy opens nothing either. The secret comes in as bytes (``ServerKeys
.session_keyring``): this package reads no configuration.

Stored format 2 is ``0x02 || AEAD envelope``. Format 1 (a bare envelope under a key derived
from the token alone, written before this change) no longer opens: ``is_current`` tells the
token checks to treat such a session as signed out, and the token purge deletes its row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from access_control import crypto
from access_control.hybrid_kem import PrivateKeyHandle, load_private_key

_FORMAT_VERSION = 2
#: The first byte of every keyring this code writes and opens (``auth_tokens.sealed_keys``).
FORMAT_PREFIX = bytes([_FORMAT_VERSION])
_SESSION_INFO = b"medchat/session-keyring/v2"
_MEMO_INFO = b"medchat/session-unwrap-memo/v2"
_AAD_LABEL = "medchat/session-keyring/v2"
_SEED = 32
_SECRET_BYTES = 32


@dataclass(frozen=True)
class HeldRoleKey:
    """A role private key opened for this session."""

    role_key_id: uuid.UUID
    role: str
    key: PrivateKeyHandle


class Keyring(crypto.SecretHandle):
    """The private keys one signed-in person may use. Refuses pickling; shows no key bytes."""

    __slots__ = ("account_id", "memo_key", "personal", "personal_key_row_id", "roles", "session_id")

    def __init__(
        self,
        account_id: uuid.UUID,
        personal: PrivateKeyHandle | None = None,
        personal_key_row_id: uuid.UUID | None = None,
        roles: tuple[HeldRoleKey, ...] = (),
    ) -> None:
        self.account_id = account_id
        self.personal = personal
        self.personal_key_row_id = personal_key_row_id
        self.roles = roles
        #: Set when opened from a session token (``open_keyring``): the token row, and a key
        #: derived from the token for what this session may keep in process memory
        #: (``access_control.unwrap_memo``). Neither exists for keys opened in-process.
        self.session_id: uuid.UUID | None = None
        self.memo_key: bytes | None = None

    def __repr__(self) -> str:
        held = ",".join(f"{r.role}:{r.key.key_id.hex()}" for r in self.roles)
        return f"Keyring(account={self.account_id}, roles=[{held}])"

    @property
    def is_empty(self) -> bool:
        """Holds no key at all (an admin's session): nothing worth sealing."""
        return self.personal is None and not self.roles

    def role_keys(self, role: str) -> list[HeldRoleKey]:
        return [held for held in self.roles if held.role == role]

    def holds_role(self, role: str) -> bool:
        return any(held.role == role for held in self.roles)

    def derive_secret(self, label: str) -> bytes:
        """A 32-byte secret only this person's session can compute (from the personal key).

        For MACs over content-derived data (idempotency records): the server holds nothing at
        rest that recomputes them, so a database dump plus the key directory cannot confirm
        a guessed message. Raises ``ValueError`` for a keyring without a personal key.
        """
        if self.personal is None:
            raise ValueError("this session holds no personal key")
        return crypto.hkdf_sha256(
            self.personal.private_bytes_for_storage(),
            salt=b"",
            info=b"medchat/derived-secret/v1/" + label.encode(),
            length=32,
        )

    def _serialise(self) -> bytearray:
        """The plaintext of a keyring, in a buffer the caller clears once it is sealed."""
        out = bytearray([_FORMAT_VERSION]) + self.account_id.bytes
        if self.personal is not None and self.personal_key_row_id is not None:
            out += b"\x01" + self.personal_key_row_id.bytes
            out += self.personal.private_bytes_for_storage()
        else:
            out += b"\x00"
        out += bytes([len(self.roles)])
        for held in self.roles:
            role = held.role.encode()
            out += held.role_key_id.bytes + bytes([len(role)]) + role
            out += held.key.private_bytes_for_storage()
        return out

    @classmethod
    def _parse(cls, data: bytes) -> Keyring:
        try:
            if data[0] != _FORMAT_VERSION:
                raise crypto.DecryptionFailed
            position = 1
            account_id = uuid.UUID(bytes=data[position : position + 16])
            position += 16
            personal = personal_row = None
            if data[position] == 1:
                personal_row = uuid.UUID(bytes=data[position + 1 : position + 17])
                personal = load_private_key(data[position + 17 : position + 17 + _SEED])
                position += 17 + _SEED
            else:
                position += 1
            roles = []
            for _ in range(data[position]):
                start = position + 1
                role_key_id = uuid.UUID(bytes=data[start : start + 16])
                length = data[start + 16]
                role = data[start + 17 : start + 17 + length].decode()
                seed = data[start + 17 + length : start + 17 + length + _SEED]
                roles.append(HeldRoleKey(role_key_id, role, load_private_key(seed)))
                position = start + 16 + length + _SEED
            return cls(account_id, personal, personal_row, tuple(roles))
        except (IndexError, ValueError, UnicodeDecodeError) as exc:
            raise crypto.DecryptionFailed from exc


def _derive(token: str, secret: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 over the token, keyed by the server secret (the extract step's salt)."""
    if len(secret) < _SECRET_BYTES:
        raise ValueError("the session-keyring secret must be a 32-byte server key")
    return crypto.hkdf_sha256(token.encode("utf-8"), salt=secret, info=info, length=32)


def derive_token_key(token: str, secret: bytes, info: bytes) -> bytes:
    """A key for ``info`` that only ``token`` together with the server key derives: the one
    rule for everything sealed to a session (the console's pending step uses it too)."""
    return _derive(token, secret, info)


def _session_key(token: str, secret: bytes) -> bytes:
    return _derive(token, secret, _SESSION_INFO)


def is_current(sealed: bytes | None) -> bool:
    """``sealed`` (a row's ``sealed_keys``) is absent or in the format this code opens.

    A keyring of an older format can never open again, so its session counts as signed out
    (and not as a failure worth a 500): the token checks refuse it like an expired token.
    """
    return sealed is None or sealed[:1] == FORMAT_PREFIX


def seal_keyring(keyring: Keyring, token: str, token_row_id: uuid.UUID, secret: bytes) -> bytes:
    """Seal the opened keys under a key only ``token`` (held by the client) together with
    ``secret`` (the session-keyring server key) can derive."""
    aad = crypto.associated_data(_AAD_LABEL, token_row_id, keyring.account_id)
    plain = keyring._serialise()
    try:
        return FORMAT_PREFIX + crypto.seal(_session_key(token, secret), plain, aad)
    finally:
        plain[:] = bytes(len(plain))  # the seeds side by side stay no longer than the seal


def open_keyring(
    sealed: bytes, token: str, token_row_id: uuid.UUID, account_id: uuid.UUID, secret: bytes
) -> Keyring:
    """Re-open the session's keys; ``DecryptionFailed`` for the wrong token, secret, row or
    account, and for a keyring of an older format."""
    if not sealed.startswith(FORMAT_PREFIX):
        raise crypto.DecryptionFailed
    aad = crypto.associated_data(_AAD_LABEL, token_row_id, account_id)
    opened = crypto.open_sealed(_session_key(token, secret), sealed[1:], aad)
    keyring = Keyring._parse(opened)
    if keyring.account_id != account_id:
        raise crypto.DecryptionFailed
    keyring.session_id = token_row_id
    # Mixed with the server key too, though the process holding the memo holds that key as
    # well: it costs one HKDF per request, and keeps one rule for everything sealed to a
    # session (an entry of the memo copied out of the process needs more than the token).
    keyring.memo_key = _derive(token, secret, _MEMO_INFO)
    return keyring
