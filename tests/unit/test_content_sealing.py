"""A message body's associated data, as ``ContentKey`` builds it part by part and with its
authors' parts made once per key, is exactly the one ``medchat.keys.sealing`` documents."""

from __future__ import annotations

import uuid

import pytest

from access_control import crypto
from medchat.keys.sealing import ContentFormat, ContentKey, MessageLabel

DEK = bytes(range(32))
CONVERSATION = uuid.UUID(int=42)
MEMBER, DOCTOR = uuid.UUID(int=1), uuid.UUID(int=2)


def documented_aad(content_format: ContentFormat, message: MessageLabel) -> bytes:
    if content_format is ContentFormat.PLACE:
        return crypto.associated_data("medchat/content/v1", CONVERSATION, message.id, "body")
    return crypto.associated_data(
        "medchat/content/v2",
        CONVERSATION,
        message.id,
        "body",
        message.seq,
        message.author_role,
        message.author_id,
    )


MESSAGES = [
    MessageLabel(uuid.uuid4(), 1, "member", MEMBER),
    MessageLabel(uuid.uuid4(), 2, "clinician", DOCTOR),
    MessageLabel(uuid.uuid4(), 10**6, "member", MEMBER),
]


@pytest.mark.parametrize("content_format", list(ContentFormat))
def test_a_body_is_sealed_under_the_documented_associated_data(content_format) -> None:
    key = ContentKey(DEK, CONVERSATION, content_format)
    for message in MESSAGES:  # the second member message meets the author's memo
        sealed = key.seal_body(message, f"text {message.seq}")
        aad = documented_aad(content_format, message)
        assert crypto.open_sealed(DEK, sealed, aad) == f"text {message.seq}".encode()
        assert key.open_body(message, sealed) == f"text {message.seq}"
        place = (message.id, message.seq, message.author_role, message.author_id)
        assert key.open_body_at(*place, sealed) == f"text {message.seq}"


@pytest.mark.parametrize(
    "moved",
    [
        {"author_id": DOCTOR},  # another author of the same role
        {"author_role": "clinician"},  # the same author under another role
        {"seq": 4},
        {"message_id": uuid.uuid4()},
    ],
)
def test_a_warm_key_opens_a_body_only_at_its_own_place(moved) -> None:
    key = ContentKey(DEK, CONVERSATION, ContentFormat.BOUND)
    own = {"message_id": uuid.uuid4(), "seq": 3, "author_role": "member", "author_id": MEMBER}
    sealed = key.seal_body(MessageLabel(own["message_id"], 3, "member", MEMBER), "hello")
    # Every author's parts are in the memo before the wrong place is tried.
    key.seal_body(MessageLabel(uuid.uuid4(), 9, "clinician", DOCTOR), "x")
    key.seal_body(MessageLabel(uuid.uuid4(), 9, "clinician", MEMBER), "x")
    key.seal_body(MessageLabel(uuid.uuid4(), 9, "member", DOCTOR), "x")
    assert key.open_body_at(**own, sealed=sealed) == "hello"

    with pytest.raises(crypto.DecryptionFailed):
        key.open_body_at(**{**own, **moved}, sealed=sealed)
