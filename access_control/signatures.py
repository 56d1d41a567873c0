"""Ed25519 signatures: records anyone holding the public key can check and no one can re-sign.

For the sealed-archive ledger (SECURITY-MODEL "Deletion, sealed archive, retention") and,
optionally, key-integrity tags (key hierarchy 10). Threat: someone who can write the ledger
rewrites entries and recomputes hashes; without the signing key kept outside the database
the signatures no longer verify. Ed25519 per RFC 8032 (pure, no context): verification is
OpenSSL's, which refuses non-canonical S (malleability) and wrong-length signatures; on top
of it, public keys of small order are refused (under such a key forgeries need no secret).

Messages are signed as given: callers domain-separate them (``crypto.associated_data`` with
a label of their own), so a ledger signature can never be replayed as another record's. The
verifying key must come from configuration or a pin, never from the row being checked.

Part of the crypto core with ``crypto`` (symmetric), ``hybrid_kem`` and ``password_kdf``.
"""

from __future__ import annotations

import os
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from access_control.crypto import (
    KEY_ID_SIZE,
    DecryptionFailed,
    IntegrityCheckFailed,
    RandomBytes,
    SecretHandle,
    digest,
)

PRIVATE_KEY_SIZE: Final = 32
PUBLIC_KEY_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
_FINGERPRINT_LABEL: Final = "medchat/ed25519-public-key/v1"
_P: Final = 2**255 - 19
#: y-coordinates of the eight small-order points of edwards25519 (the identity, order 2,
#: order 4 at y = 0, and the two y values of the order-8 points), whatever the sign bit.
_SMALL_ORDER_Y: Final = frozenset(
    {
        0,
        1,
        _P - 1,
        int.from_bytes(
            bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
            "little",
        ),
        int.from_bytes(
            bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
            "little",
        ),
    }
)


class SigningKeyHandle(SecretHandle):
    """An opened Ed25519 private key. Refuses pickling; ``repr`` shows only the key id."""

    __slots__ = ("_key", "key_id", "public_key_bytes")

    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        """Hold ``key``; use ``generate_signing_key`` or a ``load_signing_key*`` function."""
        self._key = key
        self.public_key_bytes: bytes = key.public_key().public_bytes_raw()
        self.key_id: bytes = digest(_FINGERPRINT_LABEL, self.public_key_bytes)[:KEY_ID_SIZE]

    def private_bytes_for_storage(self) -> bytes:
        """The raw 32-byte private key (RFC 8032 seed). Secret."""
        return self._key.private_bytes_raw()

    def private_pem_for_storage(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM, for a 0600 file. Secret."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        return f"SigningKeyHandle(key_id={self.key_id.hex()})"


def generate_signing_key(*, random_bytes: RandomBytes = os.urandom) -> SigningKeyHandle:
    """A fresh Ed25519 key from 32 random bytes."""
    return load_signing_key(random_bytes(PRIVATE_KEY_SIZE))


def load_signing_key(raw: bytes) -> SigningKeyHandle:
    """The handle for raw bytes from ``private_bytes_for_storage``; ``DecryptionFailed`` if
    they are not a 32-byte key."""
    if len(raw) != PRIVATE_KEY_SIZE:
        raise DecryptionFailed
    return SigningKeyHandle(ed25519.Ed25519PrivateKey.from_private_bytes(raw))


def load_signing_key_pem(pem: bytes) -> SigningKeyHandle:
    """The handle for an unencrypted PKCS#8 PEM Ed25519 key; ``DecryptionFailed`` for
    anything else (another key type, an encrypted or malformed PEM)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise DecryptionFailed from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise DecryptionFailed
    return SigningKeyHandle(key)


def sign(signing_key: SigningKeyHandle, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``message`` (deterministic, RFC 8032 5.1.6)."""
    return signing_key._key.sign(message)


def verify_signature(public_key_bytes: bytes, signature: bytes, message: bytes) -> None:
    """Raise ``IntegrityCheckFailed`` unless ``signature`` is valid for ``message`` under the
    32-byte public key, including when the key or signature is malformed or the key has small
    order (Wycheproof lets verifiers choose; we refuse)."""
    if len(public_key_bytes) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        raise IntegrityCheckFailed
    # Clear the sign bit and reduce y mod p, so non-canonical encodings are caught too.
    y = int.from_bytes(public_key_bytes, "little") & ((1 << 255) - 1)
    if y % _P in _SMALL_ORDER_Y:
        raise IntegrityCheckFailed
    try:
        public_key = ed25519.Ed25519PublicKey.from_public_bytes(public_key_bytes)
        public_key.verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise IntegrityCheckFailed from exc


def signing_key_fingerprint(public_key_bytes: bytes) -> str:
    """The full SHA-256 fingerprint (64 hex digits, domain-separated) of a verifying key."""
    return digest(_FINGERPRINT_LABEL, public_key_bytes).hex()
