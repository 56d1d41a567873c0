"""Password-sealed secrets: a personal private key opens only with its owner's password.

SECURITY-MODEL key hierarchy 3. Threat: a database dump guessed offline. The key that seals
the secret is derived with scrypt (RFC 7914) from the password and a random 16-byte salt, so
each guess costs memory and time; never from the bcrypt hash, which the database holds. The
cost parameters travel in the blob, so they can be raised later (open with the old ones,
re-seal with the new) and a blob written with absurd ones is refused before any work is
done, so a forged row cannot make a login allocate gigabytes.

Blob: ``version (1) || log2 N (1) || r (1) || p (1) || salt (16) || nonce (12) ||
AES-256-GCM ciphertext+tag``, the header bound as associated data together with the caller's
``aad`` (whose key this is). No key id is stored: one derived from the password would be a
second guessing oracle, and the salt already names the derived key.

Part of the crypto core with ``crypto`` (symmetric), ``hybrid_kem`` and ``signatures``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from access_control.crypto import (
    KEY_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    DecryptionFailed,
    RandomBytes,
    _aesgcm_decrypt_from_parts,
    _aesgcm_encrypt_from_parts,
    associated_data,
)

PASSWORD_BLOB_VERSION: Final = 0x01
SALT_SIZE: Final = 16
_HEADER_SIZE: Final = 1 + 3 + SALT_SIZE + NONCE_SIZE
_DOMAIN: Final = "medchat/password-seal/v1"

#: Bounds for parameters read from a blob (and accepted at all): 2**10 is too cheap to be
#: worth storing; 2**20 with r=8 already needs 1 GiB per login.
MIN_LOG2_N: Final = 10
MAX_LOG2_N: Final = 20
_MAX_R: Final = 16
_MAX_P: Final = 4
_MAX_MEMORY: Final = 1 << 30


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost: N = 2**log2_n, block size r, parallelism p (RFC 7914 section 2).

    The default log2_n=17 (128 MiB, about 0.4 s) matches the production setting
    ``scrypt_log2_n``; tests use 10. Raises ``ValueError`` outside the accepted bounds.
    """

    log2_n: int = 17
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        """Refuse parameters outside the bounds ``open_with_password`` accepts."""
        if not MIN_LOG2_N <= self.log2_n <= MAX_LOG2_N:
            raise ValueError(f"scrypt log2_n must be in [{MIN_LOG2_N}, {MAX_LOG2_N}]")
        if not 1 <= self.r <= _MAX_R or not 1 <= self.p <= _MAX_P:
            raise ValueError(f"scrypt needs 1 <= r <= {_MAX_R} and 1 <= p <= {_MAX_P}")
        if self.memory_bytes > _MAX_MEMORY:
            raise ValueError("scrypt parameters would need more than 1 GiB")

    @property
    def n(self) -> int:
        """The CPU/memory cost N."""
        return 1 << self.log2_n

    @property
    def memory_bytes(self) -> int:
        """Memory one derivation needs (128 * r * N bytes)."""
        return 128 * self.r * self.n


def _derive(password: str, salt: bytes, params: ScryptParams) -> bytes:
    # UTF-8 without normalisation, exactly as access_control.passwords hashes it, so the
    # password that logs in is the password that opens.
    kdf = Scrypt(salt=salt, length=KEY_SIZE, n=params.n, r=params.r, p=params.p)
    return kdf.derive(password.encode("utf-8"))


def seal_with_password(
    secret: bytes,
    password: str,
    *,
    aad: bytes,
    params: ScryptParams,
    random_bytes: RandomBytes = os.urandom,
) -> bytes:
    """Encrypt ``secret`` under a key derived from ``password`` with a fresh salt and nonce.

    ``aad`` names what the secret is (e.g. ``associated_data("personal-key", account_id)``);
    the same bytes must be given to open it. Raises ``ValueError`` for an empty password.
    """
    if not password:
        raise ValueError("an empty password protects nothing")
    salt = random_bytes(SALT_SIZE)
    nonce = random_bytes(NONCE_SIZE)
    header = bytes([PASSWORD_BLOB_VERSION, params.log2_n, params.r, params.p]) + salt + nonce
    key = _derive(password, salt, params)
    return header + _aesgcm_encrypt_from_parts(
        key, nonce, secret, associated_data(_DOMAIN, header, aad)
    )


def password_blob_params(blob: bytes) -> ScryptParams:
    """The parameters a blob was sealed with (to decide whether to re-seal with higher ones).

    Raises ``DecryptionFailed`` if the blob is malformed or names parameters out of bounds.
    """
    if len(blob) < _HEADER_SIZE + TAG_SIZE or blob[0] != PASSWORD_BLOB_VERSION:
        raise DecryptionFailed
    try:
        return ScryptParams(log2_n=blob[1], r=blob[2], p=blob[3])
    except ValueError as exc:
        raise DecryptionFailed from exc


def open_with_password(blob: bytes, password: str, *, aad: bytes) -> bytes:
    """Open a blob made by ``seal_with_password``, with the parameters stored in it.

    Raises ``DecryptionFailed`` for a wrong password, other ``aad``, any altered byte, or
    parameters out of bounds (checked before scrypt runs).
    """
    params = password_blob_params(blob)
    header = blob[:_HEADER_SIZE]
    salt = header[4 : 4 + SALT_SIZE]
    nonce = header[4 + SALT_SIZE :]
    key = _derive(password, salt, params)
    return _aesgcm_decrypt_from_parts(
        key, nonce, blob[_HEADER_SIZE:], associated_data(_DOMAIN, header, aad)
    )
