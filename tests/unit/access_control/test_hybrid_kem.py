"""HPKE key wraps with ML-KEM-768 + X25519: round trips, every refusal, key handles and
public-key validation (low-order X25519 halves, malformed ML-KEM keys, pinned fingerprints)."""

from __future__ import annotations

import copy
import pickle
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from access_control import hybrid_kem as kem
from access_control.crypto import DecryptionFailed, IntegrityCheckFailed

ALICE = kem.generate_kem_keypair()
BOB = kem.generate_kem_keypair()
CONVERSATION = uuid.UUID(int=1)
DEK = bytes(range(32))
BOUND = {
    "recipient_id": "alice",
    "context_id": CONVERSATION,
    "purpose": kem.PURPOSE_CONVERSATION_DEK,
}

examples = settings(max_examples=50, deadline=None)
ids = st.one_of(st.uuids(), st.text(max_size=12), st.integers())

# RFC 7748 low-order u-coordinates (as in libsodium's blocklist and Wycheproof's
# "LowOrderPublic" cases): 0, 1, two points of order 8, p-1, p and p+1; each also with the
# top bit set, which X25519 ignores.
_LOW_ORDER = [
    "00" * 32,
    "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ec" + "ff" * 30 + "7f",
    "ed" + "ff" * 30 + "7f",
    "ee" + "ff" * 30 + "7f",
]
LOW_ORDER = [bytes.fromhex(u) for u in _LOW_ORDER] + [
    bytes.fromhex(u)[:31] + bytes([bytes.fromhex(u)[31] | 0x80]) for u in _LOW_ORDER
]


def flip_bit(blob: bytes, bit: int) -> bytes:
    out = bytearray(blob)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def with_x25519_half(public_key: bytes, x25519_public: bytes) -> bytes:
    return public_key[:-32] + x25519_public


# --- wraps -------------------------------------------------------------------------------


@examples
@given(
    key=st.binary(min_size=32, max_size=32), recipient=ids, context=ids, purpose=st.text(min_size=1)
)
def test_wrapped_key_unwraps_for_its_recipient_context_and_purpose(
    key: bytes, recipient: object, context: object, purpose: str
) -> None:
    bound = {"recipient_id": recipient, "context_id": context, "purpose": purpose}
    wrap = kem.wrap_key(ALICE.public_key_bytes, key, **bound)
    assert kem.unwrap_key(ALICE, wrap, **bound) == key


def test_wrap_names_version_suite_and_recipient_key() -> None:
    wrap = kem.wrap_key(ALICE.public_key_bytes, DEK, **BOUND)
    assert len(wrap) == kem.WRAP_SIZE == 1179
    assert wrap[0] == kem.WRAP_VERSION
    assert int.from_bytes(wrap[1:3], "big") == kem.SUITE_MLKEM768_X25519_HKDF_SHA256_AES_256_GCM
    assert kem.wrap_key_id(wrap) == ALICE.key_id == kem.public_key_id(ALICE.public_key_bytes)


def test_every_wrap_is_fresh() -> None:
    assert kem.wrap_key(ALICE.public_key_bytes, DEK, **BOUND) != kem.wrap_key(
        ALICE.public_key_bytes, DEK, **BOUND
    )


WRAP = kem.wrap_key(ALICE.public_key_bytes, DEK, **BOUND)


@examples
@given(bit=st.integers(0, len(WRAP) * 8 - 1))
def test_any_flipped_bit_in_a_wrap_is_refused(bit: int) -> None:
    with pytest.raises(DecryptionFailed):
        kem.unwrap_key(ALICE, flip_bit(WRAP, bit), **BOUND)


@pytest.mark.parametrize("bit", range(11 * 8))
def test_every_flipped_bit_in_the_wrap_header_is_refused(bit: int) -> None:
    # Version, suite id and recipient key id: each is checked and also bound in the HPKE info.
    with pytest.raises(DecryptionFailed):
        kem.unwrap_key(ALICE, flip_bit(WRAP, bit), **BOUND)


@examples
@given(cut=st.integers(0, len(WRAP) - 1), extra=st.binary(min_size=1, max_size=8))
def test_truncated_or_extended_wrap_is_refused(cut: int, extra: bytes) -> None:
    with pytest.raises(DecryptionFailed):
        kem.unwrap_key(ALICE, WRAP[:cut], **BOUND)
    with pytest.raises(DecryptionFailed):
        kem.unwrap_key(ALICE, WRAP + extra, **BOUND)


@examples
@given(recipient=ids, context=ids, purpose=st.text(min_size=1))
def test_wrap_opened_for_another_recipient_context_or_purpose_is_refused(
    recipient: object, context: object, purpose: str
) -> None:
    for field, value in (
        ("recipient_id", recipient),
        ("context_id", context),
        ("purpose", purpose),
    ):
        if value != BOUND[field]:
            with pytest.raises(DecryptionFailed):
                kem.unwrap_key(ALICE, WRAP, **{**BOUND, field: value})


def test_context_ids_are_bound_with_their_type() -> None:
    # A UUID and its string form are different contexts: callers pass one type consistently.
    with pytest.raises(DecryptionFailed):
        kem.unwrap_key(ALICE, WRAP, **{**BOUND, "context_id": str(CONVERSATION)})


def test_wrap_is_refused_by_another_private_key_even_with_its_key_id_rewritten() -> None:
    with pytest.raises(DecryptionFailed):
        kem.unwrap_key(BOB, WRAP, **BOUND)
    retargeted = WRAP[:3] + BOB.key_id + WRAP[11:]
    with pytest.raises(DecryptionFailed):
        kem.unwrap_key(BOB, retargeted, **BOUND)


def test_wrap_with_an_unknown_suite_is_refused() -> None:
    with pytest.raises(DecryptionFailed):
        kem.unwrap_key(ALICE, WRAP[:1] + b"\x00\x02" + WRAP[3:], **BOUND)


@pytest.mark.parametrize("low_order", LOW_ORDER, ids=lambda u: u.hex()[:8] + u.hex()[-2:])
def test_wrap_whose_x25519_ephemeral_is_low_order_is_refused(low_order: bytes) -> None:
    # enc is ML-KEM ciphertext (1088) || X25519 ephemeral (32); OpenSSL refuses the exchange.
    start = 11 + 1088
    forged = WRAP[:start] + low_order + WRAP[start + 32 :]
    with pytest.raises(DecryptionFailed):
        kem.unwrap_key(ALICE, forged, **BOUND)


def test_wrap_refuses_a_key_that_is_not_32_bytes_and_an_empty_purpose() -> None:
    with pytest.raises(ValueError):
        kem.wrap_key(ALICE.public_key_bytes, DEK[:16], **BOUND)
    with pytest.raises(ValueError):
        kem.wrap_key(ALICE.public_key_bytes, DEK, **{**BOUND, "purpose": ""})


def test_role_private_key_seed_can_be_wrapped_to_a_holder() -> None:
    role = kem.generate_kem_keypair()
    bound = {"recipient_id": "alice", "context_id": role.key_id, "purpose": kem.PURPOSE_ROLE_KEY}
    wrap = kem.wrap_key(ALICE.public_key_bytes, role.private_bytes_for_storage(), **bound)
    opened = kem.load_private_key(kem.unwrap_key(ALICE, wrap, **bound))
    assert opened.public_key_bytes == role.public_key_bytes


# --- private key handles -------------------------------------------------------------------


def test_private_key_round_trips_through_its_stored_seed() -> None:
    loaded = kem.load_private_key(ALICE.private_bytes_for_storage())
    assert loaded.public_key_bytes == ALICE.public_key_bytes
    assert kem.unwrap_key(loaded, WRAP, **BOUND) == DEK


def test_keypair_is_derived_from_its_seed() -> None:
    def seed(n: int) -> bytes:
        return b"\x42" * n

    first, second = (
        kem.generate_kem_keypair(random_bytes=seed),
        kem.generate_kem_keypair(random_bytes=seed),
    )
    assert first.public_key_bytes == second.public_key_bytes
    assert len(first.public_key_bytes) == kem.PUBLIC_KEY_SIZE == 1217


@pytest.mark.parametrize("stored", [b"", b"\x00" * 31, b"\x00" * 33, b"\x00" * 97])
def test_load_private_key_refuses_anything_but_a_seed(stored: bytes) -> None:
    with pytest.raises(DecryptionFailed):
        kem.load_private_key(stored)


def test_private_key_handle_refuses_pickling_and_copying() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(ALICE)
    with pytest.raises(TypeError):
        copy.deepcopy(ALICE)


def test_private_key_handle_repr_shows_the_key_id_and_no_secret() -> None:
    seed = ALICE.private_bytes_for_storage().hex()
    for text in (repr(ALICE), str(ALICE), f"{ALICE!r}"):
        assert seed not in text
        assert ALICE.key_id.hex() in text
    assert not hasattr(ALICE, "__dict__")


# --- public keys -------------------------------------------------------------------------


def test_load_public_key_accepts_a_generated_key() -> None:
    loaded = kem.load_public_key(ALICE.public_key_bytes)
    assert loaded.key_id == ALICE.key_id


@pytest.mark.parametrize("low_order", LOW_ORDER, ids=lambda u: u.hex()[:8] + u.hex()[-2:])
def test_public_key_with_a_low_order_x25519_half_is_refused(low_order: bytes) -> None:
    forged = with_x25519_half(ALICE.public_key_bytes, low_order)
    with pytest.raises(IntegrityCheckFailed):
        kem.load_public_key(forged)
    with pytest.raises(IntegrityCheckFailed):
        kem.wrap_key(forged, DEK, **BOUND)


@pytest.mark.parametrize(
    "forged",
    [
        b"",
        ALICE.public_key_bytes[:-1],
        ALICE.public_key_bytes + b"\x00",
        b"\x02" + ALICE.public_key_bytes[1:],
        # a 12-bit coefficient of 0xfff >= q = 3329 fails FIPS 203's modulus check
        ALICE.public_key_bytes[:1] + b"\xff\xff" + ALICE.public_key_bytes[3:],
    ],
    ids=["empty", "short", "long", "version", "mlkem-modulus"],
)
def test_malformed_public_key_is_refused(forged: bytes) -> None:
    with pytest.raises(IntegrityCheckFailed):
        kem.load_public_key(forged)
    with pytest.raises(IntegrityCheckFailed):
        kem.wrap_key(forged, DEK, **BOUND)


def test_fingerprint_is_full_sha256_and_pins_exactly_one_key() -> None:
    fingerprint = kem.public_key_fingerprint(ALICE.public_key_bytes)
    assert len(fingerprint) == 64
    assert bytes.fromhex(fingerprint)[:8] == ALICE.key_id
    assert kem.format_fingerprint(fingerprint) == " ".join(
        fingerprint[i : i + 4] for i in range(0, 32, 4)
    )
    kem.verify_public_key_fingerprint(ALICE.public_key_bytes, fingerprint)
    kem.verify_public_key_fingerprint(ALICE.public_key_bytes, fingerprint.upper())
    with pytest.raises(IntegrityCheckFailed):
        kem.verify_public_key_fingerprint(BOB.public_key_bytes, fingerprint)
    with pytest.raises(ValueError):
        kem.verify_public_key_fingerprint(ALICE.public_key_bytes, fingerprint[:32])


# --- X25519 --------------------------------------------------------------------------------


def test_x25519_matches_rfc_7748_section_6_1() -> None:
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    alice_public = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    bob = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    bob_public = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert kem.x25519_shared_secret(alice, bob_public).hex() == shared
    assert kem.x25519_shared_secret(bob, alice_public).hex() == shared


@pytest.mark.parametrize("low_order", LOW_ORDER, ids=lambda u: u.hex()[:8] + u.hex()[-2:])
def test_x25519_refuses_low_order_peers(low_order: bytes) -> None:
    with pytest.raises(IntegrityCheckFailed):
        kem.x25519_shared_secret(b"\x07" * 32, low_order)


def test_x25519_refuses_a_peer_key_of_the_wrong_length() -> None:
    with pytest.raises(IntegrityCheckFailed):
        kem.x25519_shared_secret(b"\x07" * 32, b"\x09" * 31)
