"""AES-256-GCM envelopes, MACs, key-integrity tags and key commitments: round trips and every
refusal (a flipped bit, another row or field, another key, another owner)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from access_control import crypto
from access_control.crypto import DecryptionFailed, IntegrityCheckFailed

KEY = bytes(range(32))
CONVERSATION = uuid.UUID(int=1)
MESSAGE = uuid.UUID(int=2)

keys = st.binary(min_size=32, max_size=32)
parts = st.one_of(
    st.none(),
    st.binary(max_size=16),
    st.text(max_size=16),
    st.integers(),
    st.uuids(),
    st.booleans(),
)
examples = settings(max_examples=50, deadline=None)


def flip_bit(blob: bytes, bit: int) -> bytes:
    out = bytearray(blob)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def body_aad(conversation: uuid.UUID, row: uuid.UUID, field: str) -> bytes:
    return crypto.associated_data("message-body", conversation, row, field)


# --- envelope ----------------------------------------------------------------------------


def test_envelope_format_is_unchanged() -> None:
    # Pinned from the format as first released: stored rows depend on these bytes.
    envelope = crypto.seal(
        KEY,
        b"hello, doctor",
        body_aad(CONVERSATION, MESSAGE, "body"),
        random_bytes=lambda n: bytes(range(100, 100 + n)),
    )
    assert envelope.hex() == (
        "014d1ce5626a32cb616465666768696a6b6c6d6e6f207eb20a16c576fa51012b87a839ac0e8c7ffa1c4b"
        "f1b650533e28f5f3"
    )
    assert envelope[0] == crypto.AEAD_VERSION
    assert crypto.envelope_key_id(envelope) == crypto.key_id(KEY)


@examples
@given(key=keys, plaintext=st.binary(max_size=512), aad=st.binary(max_size=64))
def test_sealed_envelope_opens_to_its_plaintext(key: bytes, plaintext: bytes, aad: bytes) -> None:
    envelope = crypto.seal(key, plaintext, aad)
    assert crypto.open_sealed(key, envelope, aad) == plaintext


def test_every_seal_draws_a_fresh_nonce() -> None:
    assert crypto.seal(KEY, b"same", b"") != crypto.seal(KEY, b"same", b"")


@examples
@given(plaintext=st.binary(max_size=64), data=st.data())
def test_any_flipped_bit_in_an_envelope_is_refused(plaintext: bytes, data: st.DataObject) -> None:
    aad = body_aad(CONVERSATION, MESSAGE, "body")
    envelope = crypto.seal(KEY, plaintext, aad)
    bit = data.draw(st.integers(0, len(envelope) * 8 - 1))
    with pytest.raises(DecryptionFailed):
        crypto.open_sealed(KEY, flip_bit(envelope, bit), aad)


@examples
@given(plaintext=st.binary(max_size=64), data=st.data())
def test_truncated_or_extended_envelope_is_refused(plaintext: bytes, data: st.DataObject) -> None:
    envelope = crypto.seal(KEY, plaintext, b"")
    cut = data.draw(st.integers(0, len(envelope) - 1))
    with pytest.raises(DecryptionFailed):
        crypto.open_sealed(KEY, envelope[:cut], b"")
    with pytest.raises(DecryptionFailed):
        crypto.open_sealed(KEY, envelope + data.draw(st.binary(min_size=1, max_size=8)), b"")


@examples
@given(other_row=st.uuids(), other_conversation=st.uuids(), other_field=st.text(max_size=12))
def test_envelope_copied_to_another_row_field_or_conversation_is_refused(
    other_row: uuid.UUID, other_conversation: uuid.UUID, other_field: str
) -> None:
    envelope = crypto.seal(KEY, b"diagnosis", body_aad(CONVERSATION, MESSAGE, "body"))
    elsewhere = [
        (CONVERSATION, other_row, "body"),
        (other_conversation, MESSAGE, "body"),
        (CONVERSATION, MESSAGE, other_field),
    ]
    for place in elsewhere:
        if place != (CONVERSATION, MESSAGE, "body"):
            with pytest.raises(DecryptionFailed):
                crypto.open_sealed(KEY, envelope, body_aad(*place))


@examples
@given(other_key=keys)
def test_envelope_under_another_key_is_refused(other_key: bytes) -> None:
    envelope = crypto.seal(KEY, b"diagnosis", b"aad")
    if other_key != KEY:
        with pytest.raises(DecryptionFailed):
            crypto.open_sealed(other_key, envelope, b"aad")


def test_envelope_whose_key_id_is_rewritten_still_fails_under_another_key() -> None:
    other = bytes(32)
    envelope = bytearray(crypto.seal(KEY, b"diagnosis", b""))
    envelope[1 : 1 + crypto.KEY_ID_SIZE] = crypto.key_id(other)
    with pytest.raises(DecryptionFailed):
        crypto.open_sealed(other, bytes(envelope), b"")


def test_seal_refuses_a_key_that_is_not_256_bits() -> None:
    with pytest.raises(ValueError):
        crypto.seal(KEY[:16], b"x", b"")


@examples
@given(a=st.lists(parts, max_size=4), b=st.lists(parts, max_size=4))
def test_associated_data_never_encodes_two_part_lists_alike(a: list, b: list) -> None:
    if a != b:
        assert crypto.associated_data(*a) != crypto.associated_data(*b)


def test_associated_data_keeps_types_apart() -> None:
    values = [None, b"1", "1", 1, True, uuid.UUID(int=1), str(uuid.UUID(int=1))]
    assert len({crypto.associated_data(v) for v in values}) == len(values)


class _Id(uuid.UUID):
    """A subclass of UUID: ``part`` encodes it through the general path."""


@examples
@given(values=st.lists(parts, max_size=4))
def test_part_is_one_part_of_associated_data(values: list) -> None:
    assert b"".join(crypto.part(v) for v in values) == crypto.associated_data(*values)


_ONE_OF_EACH = [uuid.UUID(int=0), uuid.uuid4(), _Id(int=5), 0, 7, -12, 10**40, True, False]
_ONE_OF_EACH += ["", "body", b"", b"x", None]


@pytest.mark.parametrize("value", _ONE_OF_EACH)
def test_part_encodes_each_type_as_associated_data_does(value: object) -> None:
    assert crypto.part(value) == crypto.associated_data(value)  # type: ignore[arg-type]


# --- HKDF ------------------------------------------------------------------------------


def test_hkdf_sha256_matches_rfc_5869_case_1() -> None:
    okm = crypto.hkdf_sha256(
        bytes.fromhex("0b" * 22),
        salt=bytes.fromhex("000102030405060708090a0b0c"),
        info=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        length=42,
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_hkdf_sha256_refuses_more_than_255_blocks() -> None:
    with pytest.raises(ValueError):
        crypto.hkdf_sha256(b"k", salt=b"", info=b"", length=255 * 32 + 1)


# --- MACs, key-integrity tags, commitments ------------------------------------------------


@examples
@given(key=keys, label=st.text(max_size=12), values=st.lists(parts, max_size=3), data=st.data())
def test_mac_verifies_only_its_own_label_and_parts(
    key: bytes, label: str, values: list, data: st.DataObject
) -> None:
    tag = crypto.mac(key, label, *values)
    crypto.verify_mac(key, tag, label, *values)
    with pytest.raises(IntegrityCheckFailed):
        crypto.verify_mac(key, flip_bit(tag, data.draw(st.integers(0, 255))), label, *values)
    with pytest.raises(IntegrityCheckFailed):
        crypto.verify_mac(key, tag, label + "x", *values)


TAGGED = {
    "owner_id": uuid.UUID(int=7),
    "key_id": b"\x01" * 8,
    "key_bytes": b"\x02" * 1217,
    "purpose": "personal-kem",
    "version": 1,
}
CHANGED = {
    "owner_id": uuid.UUID(int=8),
    "key_id": b"\x01" * 7 + b"\x00",
    "key_bytes": b"\x02" * 1216 + b"\x03",
    "purpose": "role-kem",
    "version": 2,
}


def test_key_integrity_tag_verifies_for_the_key_it_was_made_for() -> None:
    tag = crypto.key_integrity_tag(KEY, **TAGGED)
    crypto.verify_key_integrity(KEY, tag, **TAGGED)


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_key_integrity_tag_fails_for_any_changed_field(field: str) -> None:
    tag = crypto.key_integrity_tag(KEY, **TAGGED)
    with pytest.raises(IntegrityCheckFailed):
        crypto.verify_key_integrity(KEY, tag, **{**TAGGED, field: CHANGED[field]})


@examples
@given(other_key=keys, bit=st.integers(0, 255))
def test_key_integrity_tag_fails_under_another_key_or_with_a_flipped_bit(
    other_key: bytes, bit: int
) -> None:
    tag = crypto.key_integrity_tag(KEY, **TAGGED)
    with pytest.raises(IntegrityCheckFailed):
        crypto.verify_key_integrity(KEY, flip_bit(tag, bit), **TAGGED)
    if other_key != KEY:
        with pytest.raises(IntegrityCheckFailed):
            crypto.verify_key_integrity(other_key, tag, **TAGGED)


def test_key_integrity_tag_refuses_a_short_integrity_key() -> None:
    with pytest.raises(ValueError):
        crypto.key_integrity_tag(b"short", **TAGGED)


@examples
@given(dek=keys, other_dek=keys, conversation=st.uuids(), other=st.uuids(), bit=st.integers(0, 255))
def test_key_commitment_fails_for_another_key_conversation_or_flipped_bit(
    dek: bytes, other_dek: bytes, conversation: uuid.UUID, other: uuid.UUID, bit: int
) -> None:
    commitment = crypto.key_commitment(dek, conversation)
    crypto.verify_key_commitment(dek, commitment, conversation)
    with pytest.raises(IntegrityCheckFailed):
        crypto.verify_key_commitment(dek, flip_bit(commitment, bit), conversation)
    if other_dek != dek:
        with pytest.raises(IntegrityCheckFailed):
            crypto.verify_key_commitment(other_dek, commitment, conversation)
    if other != conversation:
        with pytest.raises(IntegrityCheckFailed):
            crypto.verify_key_commitment(dek, commitment, other)


def test_key_commitment_is_not_the_key_id() -> None:
    # Both are HMACs keyed by the DEK: the labels must keep them apart.
    assert crypto.key_commitment(KEY, CONVERSATION)[: crypto.KEY_ID_SIZE] != crypto.key_id(KEY)
