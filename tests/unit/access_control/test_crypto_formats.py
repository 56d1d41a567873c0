"""The crypto core's byte formats against known answers, and its refusals of misuse by name.

Blind indexes, key tags, commitments, token hashes and chain digests are stored: a change of
a label or of a type byte in ``associated_data`` would leave every stored value unverifiable,
and a round trip (seal, then open with the same code) cannot see it. So each format is pinned
here by bytes written out by hand, and each MAC by the HMAC of those bytes.

Misuse (a key of the wrong size, a short pin) is a bug for a developer to fix: the message is
what they read, so each one is pinned too.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import string
import uuid

import pytest

from access_control import crypto
from access_control import hybrid_kem as kem
from access_control.crypto import DecryptionFailed, IntegrityCheckFailed

KEY = bytes(range(32))


def part(encoded: bytes) -> bytes:
    """One part as ``associated_data`` frames it: a 4-byte big-endian length, then the
    already typed bytes (type byte first)."""
    return len(encoded).to_bytes(4, "big") + encoded


def hmac_sha256(key: bytes, *encoded: bytes) -> bytes:
    return hmac.new(key, b"".join(part(e) for e in encoded), hashlib.sha256).digest()


class Blob(bytes):
    """A subclass of bytes: encoded as the bytes it holds."""


class Id(uuid.UUID):
    """A subclass of UUID: encoded as the UUID it is."""


class Label(str):
    """A subclass of str (an enum's value, say): encoded as the text it holds."""

    __slots__ = ()


def test_associated_data_encodes_each_type_by_its_own_byte() -> None:
    encoded = crypto.associated_data("ab", b"c", None, True, False, 7, -1, uuid.UUID(int=1), "é")
    assert encoded == (
        part(b"sab")
        + part(b"bc")
        + part(b"\x00")
        + part(b"t")
        + part(b"f")
        + part(b"i7")
        + part(b"i-1")
        + part(b"u" + bytes(15) + b"\x01")
        + part(b"s\xc3\xa9")
    )


def test_subclasses_of_bytes_and_uuid_encode_as_their_value() -> None:
    assert crypto.associated_data(Blob(b"c")) == part(b"bc")
    assert crypto.associated_data(Id(int=1)) == part(b"u" + bytes(15) + b"\x01")
    assert crypto.associated_data(Label("é")) == part(b"s\xc3\xa9")


def test_digest_is_sha256_over_the_encoded_parts() -> None:
    expected = hashlib.sha256(part(b"smedchat/x") + part(b"by")).digest()
    assert crypto.digest("medchat/x", b"y") == expected


def test_mac_is_hmac_sha256_over_its_label_and_parts() -> None:
    assert crypto.mac(KEY, "medchat/label", "a", 5) == hmac_sha256(
        KEY, b"smedchat/label", b"sa", b"i5"
    )


def test_blind_index_is_the_mac_under_its_own_label() -> None:
    assert crypto.blind_index(KEY, "ann@example.org") == hmac_sha256(
        KEY, b"smedchat/blind-index/v1", b"sann@example.org"
    )


def test_key_commitment_is_the_mac_keyed_by_the_key_over_its_label_and_conversation() -> None:
    conversation = uuid.UUID(int=2)
    assert crypto.key_commitment(KEY, conversation) == hmac_sha256(
        KEY, b"smedchat/key-commitment/v1", b"u" + conversation.bytes
    )


def test_key_integrity_tag_covers_its_label_and_every_field_in_order() -> None:
    owner = uuid.UUID(int=3)
    tag = crypto.key_integrity_tag(
        KEY, owner_id=owner, key_id=b"k" * 8, key_bytes=b"pppp", purpose="role-key", version=2
    )
    assert tag == hmac_sha256(
        KEY,
        b"smedchat/key-integrity/v1",
        b"u" + owner.bytes,
        b"b" + b"k" * 8,
        b"bpppp",
        b"srole-key",
        b"i2",
    )


def test_token_hash_is_the_sha256_of_the_utf8_token() -> None:
    assert crypto.token_hash("tokén") == hashlib.sha256("tokén".encode()).digest()


def test_random_tokens_are_url_safe_fresh_and_as_long_as_asked() -> None:
    alphabet = set(string.ascii_letters + string.digits + "-_")
    tokens = {crypto.random_token() for _ in range(20)}
    assert len(tokens) == 20
    for token in tokens:
        assert set(token) <= alphabet
        assert len(token) == 43  # 32 bytes, base64url without padding
    assert len(crypto.random_token(16)) == 22


def test_generated_keys_are_fresh_256_bit_keys() -> None:
    keys = {crypto.generate_key() for _ in range(20)}
    assert len(keys) == 20
    assert {len(k) for k in keys} == {32}


def test_constant_time_equal_compares_the_two_values() -> None:
    assert crypto.constant_time_equal(b"abc", b"abc")
    assert not crypto.constant_time_equal(b"abc", b"abd")
    assert not crypto.constant_time_equal(b"abc", b"ab")


def test_envelope_key_id_reads_a_header_alone_and_refuses_less_or_another_version() -> None:
    envelope = crypto.seal(KEY, b"x", b"")
    header = envelope[: 1 + crypto.KEY_ID_SIZE + crypto.NONCE_SIZE]
    assert crypto.envelope_key_id(header) == crypto.key_id(KEY)
    with pytest.raises(DecryptionFailed):
        crypto.envelope_key_id(header[:-1])
    with pytest.raises(DecryptionFailed):
        crypto.envelope_key_id(bytes([0x02]) + envelope[1:])


def test_wrap_key_id_reads_a_header_alone_and_refuses_less_or_another_version() -> None:
    recipient = kem.generate_kem_keypair()
    wrap = kem.wrap_key(
        recipient.public_key_bytes,
        KEY,
        recipient_id="r",
        context_id="c",
        purpose=kem.PURPOSE_CONVERSATION_DEK,
    )
    header = wrap[: 1 + 2 + crypto.KEY_ID_SIZE]
    assert kem.wrap_key_id(header) == recipient.key_id
    with pytest.raises(DecryptionFailed):
        kem.wrap_key_id(header[:-1])
    with pytest.raises(DecryptionFailed):
        kem.wrap_key_id(bytes([0x02]) + wrap[1:])


def test_a_fingerprint_pin_may_be_written_with_spaces_and_colons() -> None:
    public = kem.generate_kem_keypair().public_key_bytes
    fingerprint = kem.public_key_fingerprint(public).upper()
    grouped = " ".join(fingerprint[i : i + 4] for i in range(0, 64, 4))
    paired = ":".join(fingerprint[i : i + 2] for i in range(0, 64, 2))
    kem.verify_public_key_fingerprint(public, grouped)
    kem.verify_public_key_fingerprint(public, paired)
    with pytest.raises(IntegrityCheckFailed):
        other = kem.generate_kem_keypair().public_key_bytes
        kem.verify_public_key_fingerprint(other, paired)


def test_a_handle_refuses_pickling_by_naming_its_class() -> None:
    with pytest.raises(
        TypeError, match=r"^AeadKey holds secret key material and cannot be pickled$"
    ):
        pickle.dumps(crypto.AeadKey(KEY))
    with pytest.raises(TypeError, match=r"^PrivateKeyHandle holds secret key material"):
        pickle.dumps(kem.generate_kem_keypair())


def _short_nonce(n: int) -> bytes:
    return b"\x00" * (n - 1)


_MISUSE = {
    "seal: short key": (
        lambda: crypto.seal(KEY[:16], b"x", b""),
        "AES-256-GCM needs a 32-byte key",
    ),
    "raw encrypt: short key": (
        lambda: crypto._aesgcm_encrypt_from_parts(KEY[:16], bytes(12), b"x", b""),
        "AES-256-GCM needs a 32-byte key",
    ),
    "raw encrypt: long nonce": (
        lambda: crypto._aesgcm_encrypt_from_parts(KEY, bytes(16), b"x", b""),
        "the formats use 96-bit GCM nonces only",
    ),
    "raw decrypt: short key": (
        lambda: crypto._aesgcm_decrypt_from_parts(KEY[:16], bytes(12), bytes(16), b""),
        "AES-256-GCM needs a 32-byte key",
    ),
    "raw decrypt: long nonce": (
        lambda: crypto._aesgcm_decrypt_from_parts(KEY, bytes(16), bytes(16), b""),
        "the formats use 96-bit GCM nonces only",
    ),
    "seal: a nonce source giving too few bytes": (
        lambda: crypto.seal(KEY, b"x", b"", random_bytes=_short_nonce),
        "the formats use 96-bit GCM nonces only",
    ),
    "integrity tag: short key": (
        lambda: crypto.key_integrity_tag(
            KEY[:31], owner_id=None, key_id=b"", key_bytes=b"", purpose="p", version=1
        ),
        "the integrity key needs at least 32 bytes",
    ),
    "commitment: short key": (
        lambda: crypto.key_commitment(KEY[:31], None),
        "a conversation key is 32 bytes",
    ),
    "hybrid key: short seed": (
        lambda: kem.PrivateKeyHandle(KEY[:31]),
        "a hybrid private key seed is 32 bytes",
    ),
    "hybrid key: short seed expanded": (
        lambda: kem._expand_seed(KEY[:31]),
        "a hybrid private key seed is 32 bytes",
    ),
    "wrap: no purpose": (
        lambda: kem._wrap_info(b"", "", "r", "c"),
        "a wrap needs a purpose",
    ),
    "wrap: a key that is not 32 bytes": (
        lambda: kem.wrap_key(
            kem.generate_kem_keypair().public_key_bytes,
            KEY[:16],
            recipient_id="r",
            context_id="c",
            purpose=kem.PURPOSE_CONVERSATION_DEK,
        ),
        "wrap_key seals 32-byte keys",
    ),
    "fingerprint: a short pin": (
        lambda: kem.verify_public_key_fingerprint(b"", "ab" * 16),
        "a pinned fingerprint is the full 64 hex digits of SHA-256",
    ),
    "x25519: short private key": (
        lambda: kem.x25519_shared_secret(KEY[:31], KEY),
        "an X25519 private key is 32 bytes",
    ),
}


@pytest.mark.parametrize("case", _MISUSE, ids=list(_MISUSE))
def test_misuse_is_refused_with_a_message_that_says_what_is_wrong(case: str) -> None:
    call, message = _MISUSE[case]
    with pytest.raises(ValueError) as refused:
        call()
    assert str(refused.value) == message
