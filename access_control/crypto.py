"""Symmetric crypto core: sealed envelopes, MACs, key tags, hashes and tokens, each made once.

Everything else asks the crypto core to seal, open, tag or hash, so each primitive and each
format exists once (STYLE "one place for each rule"). The crypto core is this module
(symmetric: AES-256-GCM, HMAC-SHA256, HKDF-SHA256 (RFC 5869), SHA-256, tokens) together with
``hybrid_kem`` (HPKE key wraps, RFC 9180, RFC 7748), ``password_kdf`` (scrypt, RFC 7914) and
``signatures`` (Ed25519, RFC 8032); only these four modules import ``cryptography``.

Threat: a copy of the database, or someone who can write its rows. Formats are versioned byte
strings whose first byte is the version; every ciphertext names the key that made it. Any
failure to open raises ``DecryptionFailed`` and any failure to verify raises
``IntegrityCheckFailed``, and neither says why, so there is no oracle to probe (as
pyca/cryptography's Fernet does with ``InvalidToken``). Misuse by the caller (a key of the
wrong size) raises ``ValueError``: that is a bug to fix, not an input to refuse.

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
from typing import Final, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

AEAD_VERSION: Final = 0x01
KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
KEY_ID_SIZE: Final = 8
_AEAD_HEADER = 1 + KEY_ID_SIZE + NONCE_SIZE
_AEAD_DOMAIN: Final = b"medchat/aead/v1"
_KEY_INTEGRITY_LABEL: Final = "medchat/key-integrity/v1"
_KEY_COMMITMENT_LABEL: Final = "medchat/key-commitment/v1"

Part = str | bytes | int | uuid.UUID | None
RandomBytes = Callable[[int], bytes]


class DecryptionFailed(Exception):
    """A ciphertext, wrap or stored secret could not be opened: wrong key, wrong place,
    altered, or malformed. Deliberately carries no reason."""


class IntegrityCheckFailed(Exception):
    """A tag, commitment, signature or public key did not verify. Carries no reason."""


class SecretHandle:
    """Base for objects that hold secret key material (tink's ``KeysetHandle`` rule).

    Pickling is refused, so opened keys never reach a cache, a queue or a session store by
    accident; subclasses keep key bytes out of ``repr`` and hand them out only through a method
    whose name says so (``private_bytes_for_storage``), which is easy to grep for.
    """

    __slots__ = ()

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} holds secret key material and cannot be pickled")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        self.__reduce__()


def _encode_part(part: Part) -> bytes:
    # The exact types first: one lookup each for the parts nearly every call passes (written
    # `type(part) is ...` so that the type checker narrows ``part``).
    if type(part) is bytes:
        return b"b" + part
    if type(part) is uuid.UUID:
        return b"u" + part.bytes
    if type(part) is str:
        return b"s" + part.encode("utf-8")
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
    """Encode parts unambiguously (typed and length-prefixed): ("ab","c") != ("a","bc").

    Each part is encoded on its own and the encodings are concatenated, so the encoding of
    a prefix of the parts is a prefix of the encoding (``content.ContentKey`` relies on it).
    """
    out = bytearray()
    for part in parts:
        encoded = _encode_part(part)
        out += len(encoded).to_bytes(4, "big")
        out += encoded
    return bytes(out)


#: ``associated_data(u)`` for a UUID ``u`` is this and its 16 bytes.
_UUID_PART: Final = (17).to_bytes(4, "big") + b"u"


def part(value: Part) -> bytes:
    """``associated_data(value)``: one part encoded alone, a piece of a longer associated data
    (``associated_data(a, b) == part(a) + part(b)``).

    A page of messages builds one associated data per body; the types each body passes (its
    id, a UUID, and its sequence number, an int) are encoded here without the general loop.
    """
    if type(value) is uuid.UUID:
        return _UUID_PART + value.bytes
    if type(value) is int:
        digits = str(value).encode()
        return (len(digits) + 1).to_bytes(4, "big") + b"i" + digits
    return associated_data(value)


def key_id(key: bytes) -> bytes:
    """A short public name for a symmetric key, safe to store beside its ciphertexts."""
    return hmac.new(key, b"medchat/key-id", hashlib.sha256).digest()[:KEY_ID_SIZE]


def generate_key() -> bytes:
    """A fresh random 256-bit symmetric key."""
    return secrets.token_bytes(KEY_SIZE)


def _aesgcm_encrypt_from_parts(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Raw AES-256-GCM with a caller-chosen nonce: ``ciphertext || 16-byte tag``.

    Internal, like Fernet's ``_encrypt_from_parts``: the formats build on it and the Wycheproof
    vectors test it. Reusing a nonce under one key breaks GCM, so callers outside the crypto
    core use ``seal``, which draws a fresh random nonce.
    """
    if len(key) != KEY_SIZE:
        raise ValueError("AES-256-GCM needs a 32-byte key")
    if len(nonce) != NONCE_SIZE:
        raise ValueError("the formats use 96-bit GCM nonces only")
    return AESGCM(key).encrypt(nonce, plaintext, aad)


def _aesgcm_decrypt_from_parts(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """Inverse of ``_aesgcm_encrypt_from_parts``; raises ``DecryptionFailed`` on any mismatch."""
    if len(key) != KEY_SIZE:
        raise ValueError("AES-256-GCM needs a 32-byte key")
    if len(nonce) != NONCE_SIZE:
        raise ValueError("the formats use 96-bit GCM nonces only")
    if len(ciphertext) < TAG_SIZE:
        raise DecryptionFailed
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag as exc:
        raise DecryptionFailed from exc


class AeadKey(SecretHandle):
    """One AES-256-GCM key for many envelopes (a page of messages under one DEK).

    ``seal`` and ``open`` are exactly the module functions of the same names; the cipher
    object and the key id are made once, which is most of the cost of opening a short text.
    """

    __slots__ = ("_aesgcm", "_key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._aesgcm = AESGCM(key)
        self._key_id = key_id(key)

    def __repr__(self) -> str:
        return f"AeadKey(key_id={self._key_id.hex()})"

    @property
    def key_id(self) -> bytes:
        """The id its envelopes name (``envelope_key_id``): not secret."""
        return self._key_id

    def seal(
        self, plaintext: bytes | bytearray, aad: bytes, *, random_bytes: RandomBytes = os.urandom
    ) -> bytes:
        nonce = random_bytes(NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise ValueError("the formats use 96-bit GCM nonces only")
        header = bytes([AEAD_VERSION]) + self._key_id + nonce
        return header + self._aesgcm.encrypt(nonce, plaintext, _aead_aad(header, aad))

    def open(self, envelope: bytes, aad: bytes) -> bytes:
        if len(envelope) < _AEAD_HEADER + TAG_SIZE or envelope[0] != AEAD_VERSION:
            raise DecryptionFailed
        header = envelope[:_AEAD_HEADER]
        if not hmac.compare_digest(header[1 : 1 + KEY_ID_SIZE], self._key_id):
            raise DecryptionFailed
        try:
            return self._aesgcm.decrypt(
                header[1 + KEY_ID_SIZE :], envelope[_AEAD_HEADER:], _aead_aad(header, aad)
            )
        except InvalidTag as exc:
            raise DecryptionFailed from exc


def seal(
    key: bytes,
    plaintext: bytes | bytearray,
    aad: bytes,
    *,
    random_bytes: RandomBytes = os.urandom,
) -> bytes:
    """Encrypt with AES-256-GCM under a fresh 96-bit random nonce.

    Envelope: ``version (1) || key id (8) || nonce (12) || ciphertext+tag``. The version and
    key id are authenticated too, so neither can be swapped. Random 96-bit nonces keep the
    collision risk negligible below 2**32 messages per key (NIST SP 800-38D 8.3); a DEK
    encrypts one conversation.
    """
    return AeadKey(key).seal(plaintext, aad, random_bytes=random_bytes)


def open_sealed(key: bytes, envelope: bytes, aad: bytes) -> bytes:
    """Open an envelope made by ``seal`` for the same key and associated data.

    Raises ``DecryptionFailed`` for every failure, whatever its cause.
    """
    return AeadKey(key).open(envelope, aad)


def envelope_key_id(envelope: bytes) -> bytes:
    """The key id an envelope names (for choosing among keys during rotation)."""
    if len(envelope) < _AEAD_HEADER or envelope[0] != AEAD_VERSION:
        raise DecryptionFailed
    return envelope[1 : 1 + KEY_ID_SIZE]


def _aead_aad(header: bytes, aad: bytes) -> bytes:
    # associated_data(_AEAD_DOMAIN, header, aad), with the constant first part made once.
    return b"".join(
        (
            _AEAD_DOMAIN_PART,
            (len(header) + 1).to_bytes(4, "big"),
            b"b",
            header,
            (len(aad) + 1).to_bytes(4, "big"),
            b"b",
            aad,
        )
    )


_AEAD_DOMAIN_PART: Final = associated_data(_AEAD_DOMAIN)


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869): ``length`` bytes of key material bound to ``info``.

    An empty salt means RFC 5869's default (HashLen zero bytes). Raises ``ValueError`` when
    ``length`` exceeds 255 * 32 bytes, the most HKDF-SHA256 can produce.
    """
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def mac(key: bytes, label: str, *parts: Part) -> bytes:
    """HMAC-SHA256 over a domain label and unambiguously encoded parts."""
    return hmac.new(key, associated_data(label, *parts), hashlib.sha256).digest()


def verify_mac(key: bytes, tag: bytes, label: str, *parts: Part) -> None:
    """Raise ``IntegrityCheckFailed`` unless ``tag`` is ``mac(key, label, *parts)``."""
    if not hmac.compare_digest(tag, mac(key, label, *parts)):
        raise IntegrityCheckFailed


def key_integrity_tag(
    integrity_key: bytes,
    *,
    owner_id: Part,
    key_id: bytes,
    key_bytes: bytes,
    purpose: str,
    version: int,
) -> bytes:
    """HMAC-SHA256 tag over a stored key and what it is for (SECURITY-MODEL key hierarchy 10).

    ``integrity_key`` lives outside the database, so someone who can write rows cannot tag a
    public key of their own; every field is bound, so a tag moved to another owner, key id,
    purpose or version fails. Raises ``ValueError`` for an integrity key under 32 bytes.
    """
    if len(integrity_key) < KEY_SIZE:
        raise ValueError("the integrity key needs at least 32 bytes")
    return mac(integrity_key, _KEY_INTEGRITY_LABEL, owner_id, key_id, key_bytes, purpose, version)


def verify_key_integrity(
    integrity_key: bytes,
    tag: bytes,
    *,
    owner_id: Part,
    key_id: bytes,
    key_bytes: bytes,
    purpose: str,
    version: int,
) -> None:
    """Raise ``IntegrityCheckFailed`` unless ``tag`` is the key's ``key_integrity_tag``."""
    expected = key_integrity_tag(
        integrity_key,
        owner_id=owner_id,
        key_id=key_id,
        key_bytes=key_bytes,
        purpose=purpose,
        version=version,
    )
    if not hmac.compare_digest(tag, expected):
        raise IntegrityCheckFailed


def key_commitment(dek: bytes, conversation_id: Part) -> bytes:
    """A commitment to a conversation key: HMAC-SHA256 keyed by the DEK over a fixed label and
    the conversation id.

    Checked after every unwrap, so a wrap replaced by one sealing a key of someone's choosing
    (HPKE needs only the public key) is detected before anything is encrypted under it.
    """
    if len(dek) != KEY_SIZE:
        raise ValueError("a conversation key is 32 bytes")
    return mac(dek, _KEY_COMMITMENT_LABEL, conversation_id)


def verify_key_commitment(dek: bytes, commitment: bytes, conversation_id: Part) -> None:
    """Raise ``IntegrityCheckFailed`` unless ``commitment`` commits to ``dek`` for this
    conversation."""
    if not hmac.compare_digest(commitment, key_commitment(dek, conversation_id)):
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
    """Compare two byte strings in time independent of where they differ."""
    return hmac.compare_digest(a, b)
