"""Hybrid post-quantum key wraps: a 32-byte key sealed so that one private key alone opens it.

SECURITY-MODEL key hierarchy 2-4 and 10. Threat: a recording of today's database opened by a
future quantum computer ("harvest now, decrypt later"), and someone who can write rows swapping
a public key, a wrap or its place. Keys are sealed with HPKE (RFC 9180, base mode,
``cryptography.hazmat.primitives.hpke``) under one suite: KEM ML-KEM-768 + X25519 (X-Wing,
IANA HPKE KEM 0x647A; draft-irtf-cfrg-concrete-hybrid-kems), KDF HKDF-SHA256, AEAD AES-256-GCM.
The wrap names its suite and recipient key, and the HPKE ``info`` binds the format version,
suite, purpose, recipient and context (conversation or role key id), so a wrap moved to
another holder, conversation or purpose does not open.

Public keys from the database are validated before anything is sealed to them: exact length,
the FIPS 203 encapsulation-key check (done by ``MLKEM768PublicKey.from_public_bytes``), and
RFC 7748 section 6.1's refusal of X25519 low-order points, decided by an exchange whose all-zero
result is refused (``x25519_shared_secret``).

Part of the crypto core with ``crypto`` (symmetric), ``password_kdf`` and ``signatures``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from access_control.crypto import (
    KEY_ID_SIZE,
    KEY_SIZE,
    DecryptionFailed,
    IntegrityCheckFailed,
    Part,
    RandomBytes,
    SecretHandle,
    associated_data,
    digest,
)

#: A private key is X-Wing's 32-byte seed; both component keys are derived from it.
SEED_SIZE: Final = 32
PUBLIC_KEY_VERSION: Final = 0x01
_MLKEM768_PUBLIC_SIZE: Final = 1184
_X25519_SIZE: Final = 32
#: ``version (1) || ML-KEM-768 encapsulation key (1184) || X25519 public key (32)``
PUBLIC_KEY_SIZE: Final = 1 + _MLKEM768_PUBLIC_SIZE + _X25519_SIZE

WRAP_VERSION: Final = 0x01
#: medchat's 2-byte suite registry. HPKE itself also binds the IANA ids (KEM 0x647A,
#: KDF 0x0001, AEAD 0x0002) into its key schedule (RFC 9180 section 5.1).
SUITE_MLKEM768_X25519_HKDF_SHA256_AES_256_GCM: Final = 0x0001
_SUITES: Final = {
    SUITE_MLKEM768_X25519_HKDF_SHA256_AES_256_GCM: hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM
    ),
}
ACTIVE_SUITE: Final = SUITE_MLKEM768_X25519_HKDF_SHA256_AES_256_GCM
_WRAP_HEADER: Final = 1 + 2 + KEY_ID_SIZE
_ENC_SIZE: Final = hpke.KEM.MLKEM768_X25519.enc_length()  # ML-KEM ct (1088) || X25519 (32)
#: ``header (11) || enc (1120) || AES-256-GCM(key) (32 + 16)``
WRAP_SIZE: Final = _WRAP_HEADER + _ENC_SIZE + KEY_SIZE + 16

PURPOSE_CONVERSATION_DEK: Final = "conversation-dek"
PURPOSE_ROLE_KEY: Final = "role-key"

_FINGERPRINT_LABEL: Final = "medchat/kem-public-key/v1"
_WRAP_INFO_LABEL: Final = "medchat/hpke-wrap/v1"


class PrivateKeyHandle(SecretHandle):
    """An opened hybrid private key. Refuses pickling; ``repr`` shows only the key id.

    ``public_key_bytes`` and ``key_id`` are public; the seed leaves only through
    ``private_bytes_for_storage``, to be sealed at once (``seal_with_password``, ``wrap_key``).
    """

    __slots__ = ("_expanded", "_seed")

    def __init__(self, seed: bytes) -> None:
        """Hold ``seed``; use ``generate_kem_keypair`` or ``load_private_key`` rather than
        calling this directly.

        Both component keys are derived from the seed on first use (ML-KEM-768 key generation
        from a seed is most of the cost of opening a session's keyring, and a request that
        needs no unwrap never pays it).
        """
        if len(seed) != SEED_SIZE:
            raise ValueError("a hybrid private key seed is 32 bytes")
        self._seed = bytes(seed)
        self._expanded: tuple[hpke.MLKEM768X25519PrivateKey, bytes, bytes] | None = None

    def _expand(self) -> tuple[hpke.MLKEM768X25519PrivateKey, bytes, bytes]:
        if self._expanded is None:
            mlkem_key, x25519_key = _expand_seed(self._seed)
            public_key_bytes = (
                bytes([PUBLIC_KEY_VERSION])
                + mlkem_key.public_key().public_bytes_raw()
                + x25519_key.public_key().public_bytes_raw()
            )
            self._expanded = (
                hpke.MLKEM768X25519PrivateKey(mlkem_key, x25519_key),
                public_key_bytes,
                public_key_id(public_key_bytes),
            )
        return self._expanded

    @property
    def _hpke_key(self) -> hpke.MLKEM768X25519PrivateKey:
        return self._expand()[0]

    @property
    def public_key_bytes(self) -> bytes:
        return self._expand()[1]

    @property
    def key_id(self) -> bytes:
        return self._expand()[2]

    def private_bytes_for_storage(self) -> bytes:
        """The 32-byte seed. Secret: seal it before it goes anywhere."""
        return self._seed

    def __repr__(self) -> str:
        return f"PrivateKeyHandle(key_id={self.key_id.hex()})"


class KemPublicKey:
    """A validated recipient public key (made only by ``load_public_key``)."""

    __slots__ = ("_hpke_key", "key_id", "public_key_bytes")

    def __init__(self, public_key_bytes: bytes, hpke_key: hpke.MLKEM768X25519PublicKey) -> None:
        """Hold an already validated key; use ``load_public_key``."""
        self.public_key_bytes = public_key_bytes
        self.key_id = public_key_id(public_key_bytes)
        self._hpke_key = hpke_key

    def __repr__(self) -> str:
        return f"KemPublicKey(key_id={self.key_id.hex()})"


def _expand_seed(seed: bytes) -> tuple[mlkem.MLKEM768PrivateKey, x25519.X25519PrivateKey]:
    # X-Wing's expandDecapsulationKey: SHAKE256(seed, 96) gives ML-KEM-768's d || z (64 bytes,
    # the FIPS 203 seed cryptography loads) and the X25519 scalar (32). One stored seed keeps
    # the two halves together, and no half can be swapped on its own.
    if len(seed) != SEED_SIZE:
        raise ValueError("a hybrid private key seed is 32 bytes")
    expanded = hashlib.shake_256(seed).digest(96)
    return (
        mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]),
        x25519.X25519PrivateKey.from_private_bytes(expanded[64:]),
    )


def generate_kem_keypair(*, random_bytes: RandomBytes = os.urandom) -> PrivateKeyHandle:
    """A fresh ML-KEM-768 + X25519 keypair from a 32-byte random seed."""
    return PrivateKeyHandle(random_bytes(SEED_SIZE))


def load_private_key(stored: bytes) -> PrivateKeyHandle:
    """The handle for a seed from ``private_bytes_for_storage``.

    Raises ``DecryptionFailed`` if ``stored`` is not a seed (it comes out of an opened blob or
    wrap, so a malformed one means the wrong thing was opened).
    """
    if len(stored) != SEED_SIZE:
        raise DecryptionFailed
    return PrivateKeyHandle(stored)


def public_key_id(public_key_bytes: bytes) -> bytes:
    """The 8-byte key id a wrap carries: the start of the public key's fingerprint."""
    return digest(_FINGERPRINT_LABEL, public_key_bytes)[:KEY_ID_SIZE]


def public_key_fingerprint(public_key_bytes: bytes) -> str:
    """The full SHA-256 fingerprint (64 hex digits, domain-separated) used for pinning."""
    return digest(_FINGERPRINT_LABEL, public_key_bytes).hex()


def format_fingerprint(fingerprint: str) -> str:
    """Fingerprint for people to compare: the first 32 hex digits in groups of four."""
    return " ".join(fingerprint[i : i + 4] for i in range(0, 32, 4))


def verify_public_key_fingerprint(public_key_bytes: bytes, expected_fingerprint: str) -> None:
    """Raise ``IntegrityCheckFailed`` unless the key has the pinned fingerprint (hierarchy 9).

    The pin must be the full 64 hex digits (spaces and colons ignored); a shorter pin is a
    configuration bug and raises ``ValueError`` rather than pinning fewer bits.
    """
    pin = expected_fingerprint.replace(" ", "").replace(":", "").lower()
    if len(pin) != 64:
        raise ValueError("a pinned fingerprint is the full 64 hex digits of SHA-256")
    if not hmac.compare_digest(pin.encode(), public_key_fingerprint(public_key_bytes).encode()):
        raise IntegrityCheckFailed


def x25519_shared_secret(private_bytes: bytes, peer_public_bytes: bytes) -> bytes:
    """X25519 (RFC 7748) that refuses low-order peers: the all-zero shared secret.

    Raises ``IntegrityCheckFailed`` when the peer key is malformed or of low order. OpenSSL
    (and BoringSSL) already fail such an exchange; the explicit all-zero check keeps the rule
    whichever backend ``cryptography`` was built with.
    """
    if len(private_bytes) != _X25519_SIZE:
        raise ValueError("an X25519 private key is 32 bytes")
    if len(peer_public_bytes) != _X25519_SIZE:
        raise IntegrityCheckFailed
    private = x25519.X25519PrivateKey.from_private_bytes(private_bytes)
    peer = x25519.X25519PublicKey.from_public_bytes(peer_public_bytes)
    try:
        shared = private.exchange(peer)
    except ValueError as exc:
        raise IntegrityCheckFailed from exc
    if hmac.compare_digest(shared, bytes(_X25519_SIZE)):
        raise IntegrityCheckFailed
    return shared


def load_public_key(public_key_bytes: bytes) -> KemPublicKey:
    """Parse and validate a hybrid public key; raises ``IntegrityCheckFailed`` if unsafe.

    Refused: a wrong version or length, an ML-KEM-768 key failing FIPS 203's modulus check, and
    an X25519 half of low order. ``cryptography``'s hybrid key object accepts any 32 bytes as
    its X25519 half and exposes no components, so the check runs here, on our bytes: X25519
    clamps every scalar to a multiple of the cofactor 8, so an exchange with any scalar is
    all-zero exactly when the point has low order.
    """
    if len(public_key_bytes) != PUBLIC_KEY_SIZE or public_key_bytes[0] != PUBLIC_KEY_VERSION:
        raise IntegrityCheckFailed
    mlkem_bytes = public_key_bytes[1 : 1 + _MLKEM768_PUBLIC_SIZE]
    x25519_bytes = public_key_bytes[1 + _MLKEM768_PUBLIC_SIZE :]
    try:
        mlkem_key = mlkem.MLKEM768PublicKey.from_public_bytes(mlkem_bytes)
    except ValueError as exc:
        raise IntegrityCheckFailed from exc
    x25519_shared_secret(secrets.token_bytes(_X25519_SIZE), x25519_bytes)
    x25519_key = x25519.X25519PublicKey.from_public_bytes(x25519_bytes)
    hpke_key = hpke.MLKEM768X25519PublicKey(mlkem_key, x25519_key)
    return KemPublicKey(bytes(public_key_bytes), hpke_key)


def _wrap_info(header: bytes, purpose: str, recipient_id: Part, context_id: Part) -> bytes:
    if not purpose:
        raise ValueError("a wrap needs a purpose")
    return associated_data(_WRAP_INFO_LABEL, header, purpose, recipient_id, context_id)


def wrap_key(
    recipient_public_key: bytes,
    key: bytes,
    *,
    recipient_id: Part,
    context_id: Part,
    purpose: str,
) -> bytes:
    """Seal a 32-byte key (a DEK, or a private key's seed) to one recipient with HPKE.

    Wrap: ``version (1) || suite id (2) || recipient key id (8) || enc (1120) || ct (48)``.
    ``recipient_id`` (account or role key id) and ``context_id`` (conversation or role key id)
    are encoded by type, as in ``associated_data``: pass the same types to ``unwrap_key``.
    Raises ``IntegrityCheckFailed`` if the public key is malformed or unsafe, ``ValueError``
    if ``key`` is not 32 bytes. Pinning and tag checks are the caller's, before this call.
    """
    return wrap_key_to(
        load_public_key(recipient_public_key),
        key,
        recipient_id=recipient_id,
        context_id=context_id,
        purpose=purpose,
    )


def wrap_key_to(
    recipient: KemPublicKey,
    key: bytes,
    *,
    recipient_id: Part,
    context_id: Part,
    purpose: str,
) -> bytes:
    """``wrap_key`` to a key already validated by ``load_public_key``.

    For sealing many keys to one recipient (a role-key rotation re-seals every conversation):
    the public key is parsed and checked once instead of once per wrap.
    """
    if len(key) != KEY_SIZE:
        raise ValueError("wrap_key seals 32-byte keys")
    header = bytes([WRAP_VERSION]) + ACTIVE_SUITE.to_bytes(2, "big") + recipient.key_id
    info = _wrap_info(header, purpose, recipient_id, context_id)
    try:
        sealed = _SUITES[ACTIVE_SUITE].encrypt(key, recipient._hpke_key, info=info)
    except ValueError as exc:  # the KEM refusing a key that slipped past validation
        raise IntegrityCheckFailed from exc
    return header + sealed


def unwrap_key(
    private_key: PrivateKeyHandle,
    wrap: bytes,
    *,
    recipient_id: Part,
    context_id: Part,
    purpose: str,
) -> bytes:
    """Open a wrap made by ``wrap_key`` for this key, recipient, context and purpose.

    Raises ``DecryptionFailed`` for every failure: another private key, recipient, context or
    purpose, an unknown version or suite, or any altered or truncated byte.
    """
    if len(wrap) != WRAP_SIZE or wrap[0] != WRAP_VERSION:
        raise DecryptionFailed
    header = wrap[:_WRAP_HEADER]
    suite = _SUITES.get(int.from_bytes(header[1:3], "big"))
    if suite is None or not hmac.compare_digest(header[3:], private_key.key_id):
        raise DecryptionFailed
    info = _wrap_info(header, purpose, recipient_id, context_id)
    try:
        key = suite.decrypt(wrap[_WRAP_HEADER:], private_key._hpke_key, info=info)
    except (InvalidTag, ValueError) as exc:  # ValueError: X25519 refusing a low-order enc
        raise DecryptionFailed from exc
    if len(key) != KEY_SIZE:
        raise DecryptionFailed
    return key


def wrap_key_id(wrap: bytes) -> bytes:
    """The recipient key id a wrap names (to pick the key during rotation)."""
    if len(wrap) < _WRAP_HEADER or wrap[0] != WRAP_VERSION:
        raise DecryptionFailed
    return wrap[3:_WRAP_HEADER]
