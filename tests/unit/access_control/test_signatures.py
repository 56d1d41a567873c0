"""Ed25519 signatures: known answers, refusals of any change, key handles and serialisation."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from access_control import signatures
from access_control.crypto import DecryptionFailed, IntegrityCheckFailed

SIGNER = signatures.generate_signing_key()
OTHER = signatures.generate_signing_key()
examples = settings(max_examples=50, deadline=None)

# RFC 8032 section 7.1, TEST 1 (empty message).
RFC_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


# An X25519 key in PKCS#8 PEM: a private key, but not a signing key.
X25519_PEM = (
    b"-----BEGIN PRIVATE KEY-----\n"
    b"MC4CAQAwBQYDK2VuBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
    b"-----END PRIVATE KEY-----\n"
)


def flip_bit(blob: bytes, bit: int) -> bytes:
    out = bytearray(blob)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_signature_matches_rfc_8032_test_1() -> None:
    key = signatures.load_signing_key(RFC_SECRET)
    assert key.public_key_bytes == RFC_PUBLIC
    assert signatures.sign(key, b"") == RFC_SIGNATURE
    signatures.verify_signature(RFC_PUBLIC, RFC_SIGNATURE, b"")


@examples
@given(message=st.binary(max_size=256), other=st.binary(max_size=256))
def test_signature_verifies_only_for_its_message(message: bytes, other: bytes) -> None:
    signature = signatures.sign(SIGNER, message)
    signatures.verify_signature(SIGNER.public_key_bytes, signature, message)
    if other != message:
        with pytest.raises(IntegrityCheckFailed):
            signatures.verify_signature(SIGNER.public_key_bytes, signature, other)


SIGNATURE = signatures.sign(SIGNER, b"ledger entry 1")


@examples
@given(bit=st.integers(0, 64 * 8 - 1))
def test_any_flipped_bit_in_a_signature_is_refused(bit: int) -> None:
    with pytest.raises(IntegrityCheckFailed):
        signatures.verify_signature(
            SIGNER.public_key_bytes, flip_bit(SIGNATURE, bit), b"ledger entry 1"
        )


@examples
@given(bit=st.integers(0, 32 * 8 - 1))
def test_any_flipped_bit_in_the_public_key_is_refused(bit: int) -> None:
    with pytest.raises(IntegrityCheckFailed):
        signatures.verify_signature(
            flip_bit(SIGNER.public_key_bytes, bit), SIGNATURE, b"ledger entry 1"
        )


def test_signature_under_another_key_is_refused() -> None:
    with pytest.raises(IntegrityCheckFailed):
        signatures.verify_signature(OTHER.public_key_bytes, SIGNATURE, b"ledger entry 1")


@pytest.mark.parametrize(
    ("public_key", "signature"),
    [
        (b"", SIGNATURE),
        (b"\x00" * 31, SIGNATURE),
        (SIGNER.public_key_bytes, SIGNATURE[:63]),
        (SIGNER.public_key_bytes, SIGNATURE + b"\x00"),
        (SIGNER.public_key_bytes, b""),
    ],
    ids=["empty-key", "short-key", "short-signature", "long-signature", "empty-signature"],
)
def test_malformed_key_or_signature_is_refused(public_key: bytes, signature: bytes) -> None:
    with pytest.raises(IntegrityCheckFailed):
        signatures.verify_signature(public_key, signature, b"ledger entry 1")


def test_signing_key_round_trips_through_raw_bytes_and_pem() -> None:
    from_raw = signatures.load_signing_key(SIGNER.private_bytes_for_storage())
    from_pem = signatures.load_signing_key_pem(SIGNER.private_pem_for_storage())
    assert from_raw.public_key_bytes == from_pem.public_key_bytes == SIGNER.public_key_bytes
    assert signatures.sign(from_pem, b"m") == signatures.sign(SIGNER, b"m")


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        X25519_PEM,
    ],
    ids=["empty", "garbage", "x25519"],
)
def test_load_signing_key_pem_refuses_anything_but_an_ed25519_key(pem: bytes) -> None:
    with pytest.raises(DecryptionFailed):
        signatures.load_signing_key_pem(pem)


def test_load_signing_key_refuses_a_wrong_length() -> None:
    with pytest.raises(DecryptionFailed):
        signatures.load_signing_key(RFC_SECRET[:31])


def test_signing_key_handle_refuses_pickling_and_hides_the_secret() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(SIGNER)
    with pytest.raises(TypeError):
        copy.deepcopy(SIGNER)
    secret = SIGNER.private_bytes_for_storage().hex()
    assert secret not in repr(SIGNER)
    assert SIGNER.key_id.hex() in repr(SIGNER)


def test_fingerprint_is_full_sha256_and_names_the_key_id() -> None:
    fingerprint = signatures.signing_key_fingerprint(SIGNER.public_key_bytes)
    assert len(fingerprint) == 64
    assert bytes.fromhex(fingerprint)[:8] == SIGNER.key_id


# SHA-256 over the domain-separated label and the RFC 8032 TEST 1 public key: a known answer,
# so a change to the label, the parts hashed or the key id's length shows here first.
RFC_FINGERPRINT = "c5b8abc65690ec1f16bd33e22263e2429885dcddea6e520818ff58933cb8c0ce"


def test_key_id_and_fingerprint_match_the_known_answer() -> None:
    opened = signatures.load_signing_key(RFC_SECRET)
    assert signatures.signing_key_fingerprint(RFC_PUBLIC) == RFC_FINGERPRINT
    assert opened.key_id == bytes.fromhex(RFC_FINGERPRINT)[:8]
    assert opened.key_id.hex() in repr(opened)


def test_a_generated_key_is_made_from_32_fresh_random_bytes() -> None:
    asked: list[int] = []

    def random_bytes(n: int) -> bytes:
        asked.append(n)
        return RFC_SECRET

    generated = signatures.generate_signing_key(random_bytes=random_bytes)
    assert asked == [32]
    assert generated.public_key_bytes == RFC_PUBLIC
    assert generated.key_id == bytes.fromhex(RFC_FINGERPRINT)[:8]


_SMALL_ORDER_Y = [
    "01" + "00" * 31,  # identity
    "ec" + "ff" * 30 + "7f",  # order 2
    "00" * 32,  # order 4
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "ed" + "ff" * 30 + "7f",  # y = p, a non-canonical 0
    "ee" + "ff" * 30 + "7f",  # y = p + 1, a non-canonical 1
]
SMALL_ORDER = [bytes.fromhex(y) for y in _SMALL_ORDER_Y] + [
    bytes.fromhex(y)[:31] + bytes([bytes.fromhex(y)[31] | 0x80]) for y in _SMALL_ORDER_Y
]


def _a_message_the_library_accepts(public_key: bytes, signature: bytes) -> bytes:
    """A message for which OpenSSL alone accepts ``signature`` under ``public_key``: proves the
    forgery is real, so only our small-order check stands between it and the ledger."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PublicKey.from_public_bytes(public_key)
    for n in range(256):
        message = b"ledger entry %d" % n
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return message
    pytest.fail("no forgery accepted by the library: the test no longer shows the check's need")


@pytest.mark.parametrize("public_key", SMALL_ORDER, ids=lambda k: k.hex()[:8] + k.hex()[-2:])
def test_small_order_public_key_is_refused_whatever_its_encoding(public_key: bytes) -> None:
    # Under a small-order key A, (R, S) = (identity, 0) satisfies [S]B = R + [k]A whenever k is
    # a multiple of A's order: one message in at most eight, found without any secret. The
    # library verifies it; we must not.
    forged = bytes.fromhex("01" + "00" * 31) + bytes(32)
    message = _a_message_the_library_accepts(public_key, forged)
    with pytest.raises(IntegrityCheckFailed):
        signatures.verify_signature(public_key, forged, message)
