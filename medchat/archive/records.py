"""What one archive-ledger record commits to: its fields' hash and the signature over that hash.

The record format of ``medchat.archive.ledger`` (SECURITY-MODEL "Deletion, sealed archive,
retention"),
kept apart from the chain so an offline reader (``medchat.archive.bundle``) checks a record
without the database:

- ``record_hash = SHA-256(label, seq, id, kind, refers_to, conversation_id, member_index,
  reason, message_count, question_at, sealed_at, content_hash, metadata_json, prev_hash)``
  (``crypto.digest``: typed, length-prefixed parts), so each record commits to its
  predecessor and the chain to its whole history.
- ``signature = Ed25519(archive-signing key, label ‖ signing_key_id ‖ record_hash)``; the
  private key lives in ``MEDCHAT_KEY_DIR``, and verification uses the *pinned* public key
  (``medchat.archive.signing``), so a chain recomputed and re-signed with another key fails.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from access_control import crypto
from medchat.archive.signing import verify_signed

_RECORD_LABEL = "medchat/archive-record/v1"
_SIGNATURE_LABEL = "medchat/archive-record-signature/v1"


class RecordKind(enum.StrEnum):
    SEALED = "sealed"
    DESTROYED = "destroyed"


def canonical_json(value: Any) -> str:
    """The one JSON spelling of a value: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class RecordFields:
    """Everything a record's hash covers (all columns but the hash and the signature)."""

    seq: int
    id: uuid.UUID
    kind: str
    refers_to: uuid.UUID | None
    conversation_id: uuid.UUID
    member_index: bytes
    reason: str
    message_count: int
    question_at: datetime
    sealed_at: datetime
    content_hash: bytes
    metadata_json: str
    prev_hash: bytes

    @classmethod
    def of(cls, row: Any) -> RecordFields:
        """The fields of a stored record (an ``ArchiveRecord`` or a row of its columns)."""
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})

    def record_hash(self) -> bytes:
        return crypto.digest(
            _RECORD_LABEL,
            self.seq,
            self.id,
            self.kind,
            self.refers_to,
            self.conversation_id,
            self.member_index,
            self.reason,
            self.message_count,
            self.question_at.isoformat(),
            self.sealed_at.isoformat(),
            self.content_hash,
            self.metadata_json,
            self.prev_hash,
        )


def verify_record_signature(
    public_key: bytes, signing_key_id: str, record_hash: bytes, signature: bytes
) -> None:
    """Raise ``IntegrityCheckFailed`` unless ``public_key`` signed this record hash (offline)."""
    verify_signed(public_key, signature, _SIGNATURE_LABEL, signing_key_id, record_hash)
