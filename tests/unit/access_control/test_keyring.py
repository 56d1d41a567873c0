"""A session's keyring on its own: its plaintext layout, the keys that seal it, and what a
keyring opened in-process lacks.

The security tests (tests/security/test_session_keyrings.py) show sessions at the API; here a
keyring is sealed and opened directly, so each field of the layout, each key derivation and
each refusal is pinned by a test of its own.
"""

from __future__ import annotations

import uuid

import pytest

from access_control import crypto
from access_control import hybrid_kem as kem
from access_control.keyring import (
    HeldRoleKey,
    Keyring,
    derive_token_key,
    open_keyring,
    seal_keyring,
)

ACCOUNT = uuid.UUID(int=7)
ROW = uuid.UUID(int=8)
TOKEN = "a-session-token"
SECRET = bytes(range(32))
PERSONAL_ROW = uuid.UUID(int=9)


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return crypto.hkdf_sha256(ikm, salt=salt, info=info, length=32)


def full_keyring() -> Keyring:
    """A personal key and two role keys of different name lengths (the layout's offsets)."""
    return Keyring(
        ACCOUNT,
        kem.generate_kem_keypair(),
        PERSONAL_ROW,
        (
            HeldRoleKey(uuid.UUID(int=10), "physician", kem.generate_kem_keypair()),
            HeldRoleKey(uuid.UUID(int=11), "archive", kem.generate_kem_keypair()),
        ),
    )


def seeds(keyring: Keyring) -> list[tuple[uuid.UUID, str, bytes]]:
    return [(h.role_key_id, h.role, h.key.private_bytes_for_storage()) for h in keyring.roles]


def test_every_key_and_id_comes_back_from_a_sealed_keyring() -> None:
    keyring = full_keyring()
    opened = open_keyring(seal_keyring(keyring, TOKEN, ROW, SECRET), TOKEN, ROW, ACCOUNT, SECRET)
    assert opened.account_id == ACCOUNT
    assert opened.personal_key_row_id == PERSONAL_ROW
    assert opened.personal is not None
    assert keyring.personal is not None
    assert (
        opened.personal.private_bytes_for_storage() == keyring.personal.private_bytes_for_storage()
    )
    assert seeds(opened) == seeds(keyring)


def test_a_keyring_without_a_personal_key_opens_without_one() -> None:
    keyring = Keyring(ACCOUNT, roles=full_keyring().roles)
    opened = open_keyring(seal_keyring(keyring, TOKEN, ROW, SECRET), TOKEN, ROW, ACCOUNT, SECRET)
    assert opened.personal is None
    assert opened.personal_key_row_id is None
    assert seeds(opened) == seeds(keyring)


def test_a_personal_key_without_its_row_is_not_sealed() -> None:
    keyring = Keyring(ACCOUNT, kem.generate_kem_keypair(), None)
    opened = open_keyring(seal_keyring(keyring, TOKEN, ROW, SECRET), TOKEN, ROW, ACCOUNT, SECRET)
    assert opened.personal is None
    assert opened.personal_key_row_id is None


def test_the_sealed_form_is_the_layout_under_the_session_key() -> None:
    keyring = full_keyring()
    sealed = seal_keyring(keyring, TOKEN, ROW, SECRET)
    assert sealed[:1] == b"\x02"
    session_key = hkdf(TOKEN.encode(), SECRET, b"medchat/session-keyring/v2")
    aad = crypto.associated_data("medchat/session-keyring/v2", ROW, ACCOUNT)
    plain = crypto.open_sealed(session_key, sealed[1:], aad)
    assert keyring.personal is not None
    expected = (
        b"\x02"
        + ACCOUNT.bytes
        + b"\x01"
        + PERSONAL_ROW.bytes
        + keyring.personal.private_bytes_for_storage()
        + b"\x02"
    )
    for held in keyring.roles:
        role = held.role.encode()
        expected += held.role_key_id.bytes + bytes([len(role)]) + role
        expected += held.key.private_bytes_for_storage()
    assert plain == expected


def test_an_opened_keyring_knows_its_session_and_its_memo_key() -> None:
    opened = open_keyring(
        seal_keyring(full_keyring(), TOKEN, ROW, SECRET), TOKEN, ROW, ACCOUNT, SECRET
    )
    assert opened.session_id == ROW
    assert opened.memo_key == hkdf(TOKEN.encode(), SECRET, b"medchat/session-unwrap-memo/v2")


def test_a_keyring_made_in_process_has_no_session_and_no_memo_key() -> None:
    keyring = full_keyring()
    assert keyring.session_id is None
    assert keyring.memo_key is None


def test_a_token_key_is_the_token_stretched_under_the_server_key() -> None:
    assert derive_token_key(TOKEN, SECRET, b"medchat/x") == hkdf(
        TOKEN.encode(), SECRET, b"medchat/x"
    )


def test_a_short_server_key_is_refused_by_name() -> None:
    with pytest.raises(ValueError) as refused:
        derive_token_key(TOKEN, SECRET[:31], b"medchat/x")
    assert str(refused.value) == "the session-keyring secret must be a 32-byte server key"


def test_a_derived_secret_comes_from_the_personal_key_and_its_label() -> None:
    keyring = full_keyring()
    assert keyring.personal is not None
    seed = keyring.personal.private_bytes_for_storage()
    assert keyring.derive_secret("idempotency") == hkdf(
        seed, b"", b"medchat/derived-secret/v1/idempotency"
    )
    with pytest.raises(ValueError) as refused:
        Keyring(ACCOUNT).derive_secret("idempotency")
    assert str(refused.value) == "this session holds no personal key"


def test_roles_held_are_named_and_the_repr_shows_key_ids_only() -> None:
    keyring = full_keyring()
    assert keyring.holds_role("physician")
    assert keyring.holds_role("archive")
    assert not keyring.holds_role("admin")
    assert [h.role_key_id for h in keyring.role_keys("archive")] == [uuid.UUID(int=11)]
    shown = repr(keyring)
    physician, archive = (h.key.key_id.hex() for h in keyring.roles)
    assert shown == f"Keyring(account={ACCOUNT}, roles=[physician:{physician},archive:{archive}])"
    assert keyring.personal is not None
    assert keyring.personal.private_bytes_for_storage().hex() not in shown
