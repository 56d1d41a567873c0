"""Exported retrievals: a signed JSON bundle anyone can verify offline with the published key.

SECURITY-MODEL "Deletion, sealed archive": a conversation retrieved through four eyes may be
exported, e.g. for a court or a regulator, who must be able to check it without access to
medchat. The bundle carries the ledger record exactly as stored (so its hash recomputes and its
ledger signature verifies) and the decrypted conversation, and is signed as a whole by the
archive-signing key. Verification needs no database and no secret: only the public key that
``GET /api/v1/archive/public-key`` publishes and the deployment pins.

Format ``medchat-archive-export/v1`` (a JSON object)::

    {"format", "exported_at", "exported_by", "retrieval": {...},
     "record": {every ledger column; bytes as hex; times as stored, ISO 8601},
     "conversation": {"id", "subject", "created_at", "messages": [{..., "attachments":
                      [{"id", "filename", "content_type", "size", "sha256"}]}]},
     "signing_key": {"algorithm": "Ed25519", "public_key": hex, "fingerprint": hex},
     "signature": hex}

``signature = Ed25519(label "medchat/archive-export/v1" ‖ canonical JSON of every other member)``
where canonical JSON has sorted keys, no spaces and UTF-8 text (``ledger.canonical_json``).
The bundle travels in that same spelling (``bundle_bytes``: canonical JSON of the whole bundle,
then a newline), and ``verify_bundle`` takes the bytes and accepts no other spelling: a
duplicate member would let the file show one text (to a reader, or to a parser that keeps the
first of two) while another verifies, so there is exactly one byte string per bundle, and the
signature is checked over bytes the file itself determines.
An attachment's ``sha256`` is of its decrypted bytes, so a file fetched separately matches.
What a bundle proves: the holder of the archive-signing key exported this text for this ledger
record. The record's content hash covers ciphertexts, which the bundle leaves out; the link
between the plaintext and that hash is vouched for by the export signature, not recomputable.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from access_control import crypto, signatures
from medchat.archive.ledger import RecordFields, canonical_json, verify_record_signature
from medchat.archive.signing import ALGORITHM, ArchiveSigner, verify_signed
from medchat.clock import iso_z
from medchat.models import ArchiveRecord

FORMAT = "medchat-archive-export/v1"
_BUNDLE_LABEL = "medchat/archive-export/v1"
_BYTES_FIELDS = ("member_index", "content_hash", "prev_hash", "record_hash", "signature")
_TIME_FIELDS = ("question_at", "sealed_at")
_UUID_FIELDS = ("id", "refers_to", "conversation_id")


class BundleRejected(ValueError):
    """The bundle does not verify; the message says which check failed."""


@dataclass(frozen=True)
class BundleSummary:
    """What a verified bundle vouches for."""

    record_id: str
    seq: int
    conversation_id: str
    messages: int
    fingerprint: str


def record_document(record: ArchiveRecord) -> dict[str, Any]:
    """A ledger record as JSON, exactly recomputable: bytes as hex, times as hashed."""
    document: dict[str, Any] = {}
    for name in (*RecordFields.__dataclass_fields__, "record_hash", "signature", "signing_key_id"):
        value = getattr(record, name)
        if name in _BYTES_FIELDS:
            value = value.hex()
        elif name in _TIME_FIELDS:
            value = value.isoformat()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        document[name] = value
    return document


def _record_fields(document: dict[str, Any]) -> RecordFields:
    try:
        values: dict[str, Any] = {}
        for name in RecordFields.__dataclass_fields__:
            value = document[name]
            if name in _BYTES_FIELDS:
                value = bytes.fromhex(value)
            elif name in _TIME_FIELDS:
                value = datetime.fromisoformat(value)
            elif name in _UUID_FIELDS and value is not None:
                value = uuid.UUID(value)
            values[name] = value
        return RecordFields(**values)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleRejected(f"the ledger record is malformed ({exc})") from None


def signing_key_document(public_key: bytes) -> dict[str, str]:
    return {
        "algorithm": ALGORITHM,
        "public_key": public_key.hex(),
        "fingerprint": signatures.signing_key_fingerprint(public_key),
    }


def sign_bundle(signer: ArchiveSigner, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the signing key named and the signature over all of it added."""
    unsigned = {**body, "format": FORMAT, "signing_key": signing_key_document(signer.public_key)}
    signature = signer.sign(_BUNDLE_LABEL, canonical_json(unsigned).encode("utf-8"))
    return {**unsigned, "signature": signature.hex()}


def bundle_bytes(bundle: dict[str, Any]) -> bytes:
    """The one byte form of a bundle: its canonical JSON and a final newline (what the export
    serves and ``verify_bundle`` requires)."""
    return canonical_json(bundle).encode("utf-8") + b"\n"


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    for name in names:
        if names.count(name) > 1:
            raise BundleRejected(f"the bundle repeats the member {name!r} (a forged copy)")
    return dict(pairs)


def _refuse_constant(name: str) -> Any:
    raise BundleRejected(f"the bundle holds {name}, which is not JSON")


def parse_bundle(data: bytes) -> dict[str, Any]:
    """The bundle ``data`` holds, accepted only in its canonical spelling (``bundle_bytes``,
    the final newline optional).

    Refused: bytes that are not UTF-8 JSON, a duplicate member at any depth (checked while
    parsing, before ``json`` keeps the last of two), and any other spelling of the same
    document (reordered members, spaces, escapes, number forms): re-encoded canonically it
    must give back exactly these bytes.
    """
    try:
        document = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_refuse_duplicates,
            parse_constant=_refuse_constant,
        )
    except BundleRejected:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BundleRejected("the bundle is not a UTF-8 JSON document") from None
    if not isinstance(document, dict):
        raise BundleRejected(f"not a {FORMAT} bundle")
    try:
        canonical = bundle_bytes(document)
    except (UnicodeEncodeError, ValueError):
        raise BundleRejected("the bundle holds text that is not valid Unicode") from None
    if data not in (canonical, canonical[:-1]):
        raise BundleRejected(
            "the bundle is not in its canonical encoding (sorted members, no spaces, UTF-8 as "
            "is): it was re-encoded or edited; verify the file as exported"
        )
    return document


def verify_bundle(data: bytes, public_key: bytes) -> BundleSummary:
    """Check an exported bundle (its bytes) against the published key; ``BundleRejected``
    says why not.

    Checks, in order: the canonical encoding (``parse_bundle``); the format; that the bundle
    names ``public_key``; the bundle signature over the canonical JSON of every member but
    the signature (the file's own bytes, less that member); that the ledger record's hash
    recomputes from its fields and its ledger signature verifies under the same key; that
    record and conversation agree.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("verify_bundle checks the bundle's bytes, not a parsed document")
    bundle = parse_bundle(bytes(data))
    if bundle.get("format") != FORMAT:
        raise BundleRejected(f"not a {FORMAT} bundle")
    unsigned = {name: value for name, value in bundle.items() if name != "signature"}
    signing_key = bundle.get("signing_key")
    named = signing_key.get("public_key") if isinstance(signing_key, dict) else None
    if named != public_key.hex():
        raise BundleRejected(
            f"the bundle names signing key {named!r}, not the published {public_key.hex()}"
        )
    try:
        signature = bytes.fromhex(bundle["signature"])
        verify_signed(public_key, signature, _BUNDLE_LABEL, canonical_json(unsigned).encode())
    except (KeyError, TypeError, ValueError, crypto.IntegrityCheckFailed):
        raise BundleRejected("the bundle's signature does not verify (it was altered)") from None
    record = bundle.get("record")
    conversation = bundle.get("conversation")
    if not isinstance(record, dict) or not isinstance(conversation, dict):
        raise BundleRejected("the bundle has no record or no conversation")
    fields = _record_fields(record)
    computed = fields.record_hash()
    if computed.hex() != record.get("record_hash"):
        raise BundleRejected(
            f"the ledger record's hash is {record.get('record_hash')}, computed {computed.hex()}"
        )
    try:
        verify_record_signature(
            public_key,
            record["signing_key_id"],
            computed,
            bytes.fromhex(record["signature"]),
        )
    except (KeyError, TypeError, ValueError, crypto.IntegrityCheckFailed):
        raise BundleRejected("the ledger record's signature does not verify") from None
    if conversation.get("id") != str(fields.conversation_id):
        raise BundleRejected("the conversation is not the one the ledger record names")
    return BundleSummary(
        record_id=str(fields.id),
        seq=fields.seq,
        conversation_id=str(fields.conversation_id),
        messages=len(conversation.get("messages") or []),
        fingerprint=signatures.signing_key_fingerprint(public_key),
    )


def conversation_document(
    conversation_id: uuid.UUID,
    subject: str | None,
    created_at: datetime,
    messages: list[Any],
    digests: dict[uuid.UUID, str],
) -> dict[str, Any]:
    """The decrypted conversation part of a bundle (``MessageView`` items, oldest first);
    ``digests`` maps attachment ids to the SHA-256 (hex) of their decrypted bytes."""
    return {
        "id": str(conversation_id),
        "subject": subject,
        "created_at": iso_z(created_at),
        "messages": [
            {
                "id": str(m.id),
                "seq": m.seq,
                "author": m.author,
                "author_name": m.author_name,
                "body": m.body,
                "created_at": iso_z(m.created_at),
                "attachments": [
                    {
                        "id": str(a.id),
                        "filename": a.filename,
                        "content_type": a.content_type,
                        "size": a.size,
                        "sha256": digests.get(a.id),
                    }
                    for a in m.attachments
                ],
            }
            for m in messages
        ],
    }
