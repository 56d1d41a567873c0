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
