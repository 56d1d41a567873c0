"""Content is sealed under the conversation's DEK, bound to its place (SECURITY-MODEL 1).

Subject, message bodies, attachment bytes, file names and types are each encrypted with
AES-256-GCM under the DEK, with associated data naming the format version, the conversation,
the row and the field: a ciphertext copied to another row, field or conversation fails.
"""

from __future__ import annotations

import uuid

from access_control import crypto

_LABEL = "medchat/content/v1"


def _aad(conversation_id: uuid.UUID, row_id: uuid.UUID, field: str) -> bytes:
    return crypto.associated_data(_LABEL, conversation_id, row_id, field)


def seal_content(
    dek: bytes, conversation_id: uuid.UUID, row_id: uuid.UUID, field: str, plaintext: bytes
) -> bytes:
    return crypto.seal(dek, plaintext, _aad(conversation_id, row_id, field))


def open_content(
    dek: bytes, conversation_id: uuid.UUID, row_id: uuid.UUID, field: str, sealed: bytes
) -> bytes:
    """Raises ``crypto.DecryptionFailed`` if the ciphertext was moved, altered or is foreign."""
    return crypto.open_sealed(dek, sealed, _aad(conversation_id, row_id, field))


def seal_text(
    dek: bytes, conversation_id: uuid.UUID, row_id: uuid.UUID, field: str, text: str
) -> bytes:
    return seal_content(dek, conversation_id, row_id, field, text.encode("utf-8"))


def open_text(
    dek: bytes, conversation_id: uuid.UUID, row_id: uuid.UUID, field: str, sealed: bytes
) -> str:
    return open_content(dek, conversation_id, row_id, field, sealed).decode("utf-8")


class ContentKey:
    """A conversation's DEK ready to open many of its fields (a page of messages).

    The same envelopes and associated data as ``open_text``: the AES-GCM key, its key id and
    the (label, conversation) head of the associated data are made once, not per field.
    """

    __slots__ = ("_aad_head", "_conversation_id", "_key")

    def __init__(self, dek: bytes, conversation_id: uuid.UUID) -> None:
        self._key = crypto.AeadKey(dek)
        self._conversation_id = conversation_id
        # ``associated_data`` encodes each part on its own and concatenates them, so the
        # encoding of (label, conversation) is a prefix of every field's associated data.
        self._aad_head = crypto.associated_data(_LABEL, conversation_id)

    def __repr__(self) -> str:
        return f"ContentKey(conversation={self._conversation_id})"

    def __reduce__(self) -> object:
        raise TypeError("a content key holds secret key material and cannot be pickled")

    def open_text(self, row_id: uuid.UUID, field: str, sealed: bytes) -> str:
        """``open_text(dek, conversation_id, row_id, field, sealed)``; ``DecryptionFailed``
        if the ciphertext was moved, altered or is foreign."""
        aad = self._aad_head + crypto.associated_data(row_id, field)
        return self._key.open(sealed, aad).decode("utf-8")
