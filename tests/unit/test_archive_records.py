"""A ledger record's bytes: its one JSON spelling and its hash, against known answers.

The record hash is what the archive-signing key signs and what ``medchat archive verify``
recomputes years later, from a copy of the database on another machine: its layout and label
must never change, and the metadata's JSON must have one spelling only (sorted keys, no
spaces, UTF-8 as is), or a record re-serialised elsewhere stops matching its signature.
"""

from __future__ import annotations

from access_control import crypto
from medchat.archive.records import canonical_json
from tests.support.archive import example_record_fields


def test_canonical_json_is_one_spelling():
    value = {"reason": "Löschung", "b": [1, 2], "a": {"z": None, "y": True}}

    assert canonical_json(value) == '{"a":{"y":true,"z":null},"b":[1,2],"reason":"Löschung"}'


def test_the_record_hash_is_the_v1_digest_of_every_field_in_order():
    fields = example_record_fields()
    expected = crypto.digest(
        "medchat/archive-record/v1",
        fields.seq,
        fields.id,
        fields.kind,
        fields.refers_to,
        fields.conversation_id,
        fields.member_index,
        fields.reason,
        fields.message_count,
        fields.question_at.isoformat(),
        fields.sealed_at.isoformat(),
        fields.content_hash,
        fields.metadata_json,
        fields.prev_hash,
    )

    assert fields.record_hash() == expected
