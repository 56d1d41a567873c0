"""The only module that touches cryptographic primitives.

Everything else asks this module to seal, open, tag or hash, so each primitive and each
format exists once (STYLE "one place for each rule"). Formats are versioned byte strings whose
first byte is the version; every ciphertext names the key that made it. Any failure to open
or verify raises one exception (``DecryptionFailed`` or ``IntegrityCheckFailed``) and says
nothing about why, so there is no oracle to probe (as pyca/cryptography's Fernet does).

Associated data binds each ciphertext to its place: callers build it with ``associated_data``
from (purpose, row id, field, ...) so a ciphertext copied to another row or field fails.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import uuid
from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

AEAD_VERSION: Final = 0x01
KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
KEY_ID_SIZE: Final = 8
_AEAD_HEADER = 1 + KEY_ID_SIZE + NONCE_SIZE
_AEAD_DOMAIN: Final = b"medchat/aead/v1"

Part = str | bytes | int | uuid.UUID | None
RandomBytes = Callable[[int], bytes]


class DecryptionFailed(Exception):
    """A ciphertext could not be opened: wrong key, wrong place, altered, or malformed."""


class IntegrityCheckFailed(Exception):
    """A tag over key material or a record did not verify."""


def _encode_part(part: Part) -> bytes:
    if part is None:
        return b"\x00"
    if isinstance(part, bytes):
        return b"b" + part
    if isinstance(part, uuid.UUID):
        return b"u" + part.bytes
    if isinstance(part, bool):  # bool is an int; keep the two apart
        return b"t" if part else b"f"
    if isinstance(part, int):
        return b"i" + str(part).encode()
    return b"s" + part.encode("utf-8")


def associated_data(*parts: Part) -> bytes:
    """Encode parts unambiguously (typed and length-prefixed): ("ab","c") != ("a","bc")."""
    out = bytearray()
    for part in parts:
        encoded = _encode_part(part)
        out += len(encoded).to_bytes(4, "big") + encoded
    return bytes(out)


def key_id(key: bytes) -> bytes:
    """A short public name for a symmetric key, safe to store beside its ciphertexts."""
    return hmac.new(key, b"medchat/key-id", hashlib.sha256).digest()[:KEY_ID_SIZE]


def generate_key() -> bytes:
    """A fresh random 256-bit symmetric key."""
    return secrets.token_bytes(KEY_SIZE)


def seal(
    key: bytes, plaintext: bytes, aad: bytes, *, random_bytes: RandomBytes = os.urandom
) -> bytes:
    """Encrypt with AES-256-GCM under a fresh 96-bit random nonce.

    Envelope: ``version (1) || key id (8) || nonce (12) || ciphertext+tag``. The version and
    key id are authenticated too, so neither can be swapped.
    """
    if len(key) != KEY_SIZE:
        raise ValueError("AES-256-GCM needs a 32-byte key")
    kid = key_id(key)
    nonce = random_bytes(NONCE_SIZE)
    header = bytes([AEAD_VERSION]) + kid + nonce
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, _aead_aad(header, aad))
    return header + ciphertext


def open_sealed(key: bytes, envelope: bytes, aad: bytes) -> bytes:
    """Open an envelope made by ``seal`` for the same key and associated data.

    Raises ``DecryptionFailed`` for every failure, whatever its cause.
    """
    if len(envelope) < _AEAD_HEADER + 16 or envelope[0] != AEAD_VERSION:
        raise DecryptionFailed
    header = envelope[:_AEAD_HEADER]
    if not hmac.compare_digest(header[1 : 1 + KEY_ID_SIZE], key_id(key)):
        raise DecryptionFailed
    nonce = header[1 + KEY_ID_SIZE :]
    try:
        return AESGCM(key).decrypt(nonce, envelope[_AEAD_HEADER:], _aead_aad(header, aad))
    except InvalidTag as exc:
        raise DecryptionFailed from exc


def envelope_key_id(envelope: bytes) -> bytes:
    """The key id an envelope names (for choosing among keys during rotation)."""
    if len(envelope) < _AEAD_HEADER or envelope[0] != AEAD_VERSION:
        raise DecryptionFailed
    return envelope[1 : 1 + KEY_ID_SIZE]


def _aead_aad(header: bytes, aad: bytes) -> bytes:
    return associated_data(_AEAD_DOMAIN, header, aad)


def mac(key: bytes, label: str, *parts: Part) -> bytes:
    """HMAC-SHA256 over a domain label and unambiguously encoded parts."""
    return hmac.new(key, associated_data(label, *parts), hashlib.sha256).digest()


def verify_mac(key: bytes, tag: bytes, label: str, *parts: Part) -> None:
    """Raise ``IntegrityCheckFailed`` unless ``tag`` is ``mac(key, label, *parts)``."""
    if not hmac.compare_digest(tag, mac(key, label, *parts)):
        raise IntegrityCheckFailed


def blind_index(key: bytes, normalised_value: str) -> bytes:
    """A keyed, deterministic index of a value (e-mail lookups without storing the address)."""
    return mac(key, "medchat/blind-index/v1", normalised_value)


def random_token(nbytes: int = 32) -> str:
    """A URL-safe random token for bearer, refresh, enrollment and reset tokens."""
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> bytes:
    """What the database keeps of a high-entropy token: its SHA-256, never the token."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def digest(*parts: Part) -> bytes:
    """SHA-256 over unambiguously encoded parts (hash chains, content hashes)."""
    return hashlib.sha256(associated_data(*parts)).digest()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
