"""What an audit entry's hash covers, format by format: what it leaves out, a database writer
can change without trace.

SECURITY-MODEL "Audit": every recorded field, the predecessor's hash and the entry's place
(chain, position) are in the hash of its format. Entries written before chains (format 1) keep
verifying under the pre-chain digest; format 3 (sealed addresses) commits to the keyed
``address_hash`` and never to the clear address, so erasing an address after
``MEDCHAT_AUDIT_ADDRESS_DAYS`` leaves the chain verifying. Pure functions of a row, without a
database; test_audit_chain.py catches the edits themselves in a stored chain.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from access_control import crypto
from medchat.audit import chain as audit_chain


def test_a_format_3_hash_leaves_the_erasable_address_out():
    """Erasing a sealed address after ``MEDCHAT_AUDIT_ADDRESS_DAYS`` must leave the chain
    verifying: format 3 commits to ``address_hash``, never to the address itself."""
    row = _entry_row(3)
    erased = {**row, "address": None}
    assert audit_chain.entry_hash(row, bytes(32)) == audit_chain.entry_hash(erased, bytes(32))


def _entry_row(format_: int) -> dict:
    return {
        "id": uuid.UUID("00000000-0000-4000-8000-000000000001"),
        "seq": 7,
        "chain": "audit/1",
        "position": 3,
        "format": format_,
        "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "actor_id": uuid.UUID("00000000-0000-4000-8000-000000000002"),
        "actor_role": "physician",
        "action": "test.action",
        "outcome": "success",
        "target_type": "thing",
        "target_id": "thing-1",
        "subject_id": uuid.UUID("00000000-0000-4000-8000-000000000003"),
        "address": "192.0.2.1",
        "address_hash": bytes(range(100, 132)),
        "details": '{"n":1}',
    }


def _changed(value: object) -> object:
    if isinstance(value, bytes):
        return bytes([value[0] ^ 1]) + value[1:]
    if isinstance(value, uuid.UUID):
        return uuid.UUID(int=value.int + 1)
    if isinstance(value, datetime):
        return value + timedelta(microseconds=1)
    if isinstance(value, int):
        return value + 1
    return f"{value}x"


_V1_FIELDS = sorted(set(_entry_row(1)) - {"chain", "position", "format", "address_hash"})
_V2_FIELDS = sorted(set(_entry_row(2)) - {"format", "address_hash"})
#: Format 3 (sealed addresses): the keyed commitment in place of the erasable clear address.
_V3_FIELDS = sorted(set(_entry_row(3)) - {"format", "address"})


@pytest.mark.parametrize(
    ("format_", "field"),
    [(1, f) for f in [*_V1_FIELDS, "prev_hash"]]
    + [(2, f) for f in [*_V2_FIELDS, "prev_hash"]]
    + [(3, f) for f in [*_V3_FIELDS, "prev_hash"]],
)
def test_an_entry_hash_covers_every_field_of_its_format(format_, field):
    """What the hash does not cover, a database writer can change without trace. Kills each
    mutant of ``entry_hash`` that drops a field, the predecessor's hash or the chain's place
    (chain, position) from either format's digest (x_entry_hash__mutmut_*: the argument
    removed or replaced by None)."""
    row, prev_hash = _entry_row(format_), bytes(range(32))
    original = audit_chain.entry_hash(row, prev_hash)
    if field == "prev_hash":
        changed = audit_chain.entry_hash(row, bytes(32))
    else:
        changed = audit_chain.entry_hash({**row, field: _changed(row[field])}, prev_hash)
    assert changed != original


def test_a_format_1_hash_is_the_pre_chain_digest_and_ignores_the_place():
    """Entries written before chains (format 1) keep verifying: their hash is the v1 digest of
    ``seq`` and ``id``, whatever chain and position the migration gave them. Kills the mutants
    of the format test (``== 1`` to ``!= 1`` or ``== 2``) and of the v1 label or layout."""
    row = _entry_row(1)
    fields = (
        row["at"].isoformat(),
        *(row[name] for name in ("actor_id", "actor_role", "action", "outcome")),
        *(row[name] for name in ("target_type", "target_id", "subject_id", "address")),
        row["details"],
        bytes(32),
    )
    expected = crypto.digest("medchat/audit-entry/v1", row["seq"], row["id"], *fields)
    assert audit_chain.entry_hash(row, bytes(32)) == expected
    moved = {**row, "chain": "audit", "position": 1}
    assert audit_chain.entry_hash(moved, bytes(32)) == expected
    assert audit_chain.entry_hash({**row, "format": 2}, bytes(32)) == crypto.digest(
        "medchat/audit-entry/v2", row["chain"], row["position"], row["seq"], row["id"], *fields
    )


def test_a_format_3_hash_is_the_v3_digest():
    """Format 3 entries are hashed under their own label, never the v2 one: the same fields
    in another format's layout are another hash. Kills ``x_entry_hash__mutmut_46``, ``_50``
    and ``_51`` (the format test ``>= 3`` made false, ``> 3`` or ``>= 4``)."""
    row = _entry_row(3)
    fields = (
        row["at"].isoformat(),
        *(row[name] for name in ("actor_id", "actor_role", "action", "outcome")),
        *(row[name] for name in ("target_type", "target_id", "subject_id", "address_hash")),
        row["details"],
        bytes(32),
    )
    place = (row["chain"], row["position"], row["seq"], row["id"])
    expected = crypto.digest("medchat/audit-entry/v3", *place, *fields)
    assert audit_chain.entry_hash(row, bytes(32)) == expected
    assert expected != crypto.digest("medchat/audit-entry/v2", *place, *fields)
