"""The unwrap memo's own rules, without a database: where an entry is filed, when it ends,
and when the memo answers nothing. tests/security/test_unwrap_memo.py shows it in sessions."""

from __future__ import annotations

import hashlib
import pickle
import uuid

import pytest

from access_control import crypto
from access_control.keyring import Keyring
from access_control.unwrap_memo import UnwrapMemo

CONVERSATION = uuid.UUID(int=3)
WRAP = b"wrap-bytes"
DEK = bytes(range(32))


def session_keyring() -> Keyring:
    keyring = Keyring(uuid.UUID(int=1))
    keyring.session_id = uuid.UUID(int=2)
    keyring.memo_key = bytes(32)
    return keyring


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_memo_refuses_pickling_by_name() -> None:
    with pytest.raises(TypeError) as refused:
        pickle.dumps(UnwrapMemo(300))
    assert str(refused.value) == "the unwrap memo is process memory and cannot be pickled"


def test_an_entry_is_filed_under_its_own_labels_and_every_part_of_its_place() -> None:
    keyring = session_keyring()
    parts = (
        keyring.session_id,
        keyring.account_id,
        CONVERSATION,
        "physician",
        hashlib.sha256(WRAP).digest(),
    )
    index, aad = UnwrapMemo._place(keyring, CONVERSATION, "physician", WRAP)
    assert index == crypto.digest("medchat/unwrap-memo-index/v1", *parts)
    assert aad == crypto.associated_data("medchat/unwrap-memo/v1", *parts)


def test_an_entry_ends_exactly_when_its_time_is_up() -> None:
    clock = Clock()
    memo = UnwrapMemo(300, monotonic=clock)
    keyring = session_keyring()
    memo.remember(keyring, CONVERSATION, "physician", WRAP, DEK)
    clock.now = 299.999
    assert memo.recall(keyring, CONVERSATION, "physician", WRAP) == DEK
    clock.now = 300.0
    assert memo.recall(keyring, CONVERSATION, "physician", WRAP) is None
    assert len(memo) == 0


def test_a_memo_turned_off_answers_nothing_it_held() -> None:
    memo = UnwrapMemo(300)
    keyring = session_keyring()
    memo.remember(keyring, CONVERSATION, "physician", WRAP, DEK)
    memo.ttl_seconds = 0
    assert memo.recall(keyring, CONVERSATION, "physician", WRAP) is None


def test_a_keyring_without_a_memo_key_is_answered_nothing() -> None:
    memo = UnwrapMemo(300)
    keyring = session_keyring()
    memo.remember(keyring, CONVERSATION, "physician", WRAP, DEK)
    keyring.memo_key = None
    assert memo.recall(keyring, CONVERSATION, "physician", WRAP) is None
    memo.remember(keyring, CONVERSATION, "archive", WRAP, DEK)
    assert len(memo) == 1
