"""The audit log is an append-only hash chain that names the first entry someone broke.

SECURITY-MODEL "Audit": an edited, deleted, reordered or truncated entry, a rewound chain head
and a chain recomputed without the MAC key are all caught, and ``verify`` names the first entry
concerned, so an auditor knows from where the log can no longer be trusted. Tampering goes
through raw SQL, as someone with write access to the database would do it.

What each format of an entry's hash covers is pinned in test_audit_entry_format.py; appends
within transactions (rollback, refusals, concurrent writers) in test_audit_append.py.
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from access_control import crypto
from medchat import audit
from medchat.audit import chain as audit_chain
from medchat.audit import entry_format, verification
from medchat.db import table_of
from medchat.models import AuditEntry
from tests.support.audit import ENTRIES, execute, seqs, verify, write_entries


@pytest.fixture
def app(make_app):
    """One chain, so positions are the sequence numbers these tests tamper with by hand;
    tests/unit/services/test_audit_chains.py covers several chains."""
    return make_app(audit_chains=1)


def test_intact_chain_verifies_with_every_entry_counted(runtime):
    write_entries(runtime, ENTRIES, per_transaction=2)

    result = verify(runtime)

    assert result.ok, result.reason
    assert result.entries == ENTRIES
    assert result.first_bad is None
    assert result.head_seq == ENTRIES
    assert seqs(runtime) == list(range(1, ENTRIES + 1))


def test_empty_chain_verifies(runtime):
    result = verify(runtime)
    assert result.ok, result.reason
    assert result.entries == 0
    assert result.head_hash == bytes(32).hex()  # the genesis hash (kills verify's mutants 9, 12)


def test_a_log_of_one_entry_reports_that_entry_as_its_head(runtime):
    """Kills the mutant of ``verify`` that starts ``newest`` at 1 (seq 1 would never count)."""
    write_entries(runtime, 1)
    result = verify(runtime)
    assert result.ok, result.reason
    with runtime.database.transaction() as session:
        assert result.head_hash == session.scalar(select(AuditEntry.entry_hash)).hex()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("action", "test.innocent"),
        ("details", '{"n":99}'),
        ("outcome", "denied"),
        # The clear column is empty in format 3: one planted there is caught as well.
        ("address", "198.51.100.1"),
        ("address_hash", bytes(32)),
        # So is an erasure MAC, a column of formats 1 and 2 only (kills _hash_holds 9 and 10).
        ("address_erasure_mac", bytes(32)),
    ],
)
def test_edited_entry_is_named(runtime, column, value):
    write_entries(runtime)

    execute(runtime, f"UPDATE audit_entries SET {column} = :value WHERE seq = 3", value=value)

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == 3
    assert result.reason == "content does not match its hash"


#: Every recorded field an entry's hash covers, with a value it never has in ``write_entries``
#: (no actor, subject or address there). Each kills the mutant of ``entry_hash`` that leaves that
#: field out of the hash (issue 19: medchat.audit.chain.x_entry_hash__mutmut_*, one per field);
#: the timestamp is shifted by a second from the value read back.
_EDITS = {
    "at": None,
    "actor_id": uuid.UUID("00000000-0000-4000-8000-00000000a11c"),
    "actor_role": "admin",
    "target_type": "other",
    "target_id": "thing-99",
    "subject_id": uuid.UUID("00000000-0000-4000-8000-00000000b0b0"),
    "id": uuid.UUID("00000000-0000-4000-8000-00000000c0de"),
}


@pytest.mark.parametrize("column", sorted(_EDITS))
def test_every_hashed_field_edited_is_named(runtime, column):
    """Typed values go through a Core UPDATE (the database writer's SQL, with SQLAlchemy's
    conversions of UUIDs and times for either database)."""
    write_entries(runtime)
    entries = table_of(AuditEntry)
    value = _EDITS[column]
    if column == "at":
        with runtime.database.transaction() as session:
            at = session.scalar(select(entries.c.at).where(entries.c.seq == 3))
        value = at + timedelta(seconds=1)

    with runtime.database.transaction() as session:
        session.execute(update(entries).where(entries.c.seq == 3).values({column: value}))

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == 3
    assert result.reason == "content does not match its hash"


def test_an_edited_sequence_number_is_named(runtime):
    """The last entry renumbered past the others keeps the chain's order: only its hash (which
    covers ``seq``, the access log's order) names it. Kills the mutant of ``entry_hash`` that
    leaves ``seq`` out of a format-2 hash."""
    write_entries(runtime)

    execute(runtime, "UPDATE audit_entries SET seq = 50 WHERE seq = 5")

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == 50
    assert result.reason == "content does not match its hash"


def test_the_walk_reads_every_entry_across_batches(runtime):
    """``verify`` reads a chain 2,000 entries at a time; each batch starts past the last one
    read. Read here two at a time (kills the mutant of ``_rows`` that drops the ``seq > last``
    condition: every batch after the first would come back empty and the walk would stop).
    At most one entry more than there are is read: a reader that starts a batch at or before
    the last one read (``>=``, or forgetting it) never ends, and fails here at once."""
    write_entries(runtime)
    with runtime.database.transaction() as session:
        read = verification._rows(session, "audit", batch=2)
        walked = [entry.seq for entry in itertools.islice(read, ENTRIES + 1)]
    assert walked == list(range(1, ENTRIES + 1))


def test_an_entry_linked_to_another_predecessor_is_named(runtime):
    """Kills the mutants of the broken-link fault in ``_walk`` (its seq or its reason)."""
    write_entries(runtime)

    execute(runtime, "UPDATE audit_entries SET prev_hash = :h WHERE seq = 3", h=bytes(32))

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == 3
    assert result.reason == "does not link to the previous entry"


def test_deleted_middle_entry_is_named(runtime):
    write_entries(runtime)

    execute(runtime, "DELETE FROM audit_entries WHERE seq = 3")

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == 3
    # Where the hole is, exactly (kills the mutants of _walk's ``where``: position - 1, + 2).
    assert result.reason == "an entry is missing before seq 4 (chain audit position 3)"


def test_an_entry_renumbered_backwards_is_out_of_order(runtime):
    """A position below the next expected one is out of order, not a hole (kills the mutant of
    ``_walk``'s ``entry.position > position + 1`` to ``> position - 1``)."""
    write_entries(runtime)

    execute(runtime, "UPDATE audit_entries SET position = 0 WHERE seq = 1")

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == 1
    assert result.reason == "entry is out of order (chain audit position 1)"


def test_deleted_first_entry_is_named(runtime):
    write_entries(runtime)

    execute(runtime, "DELETE FROM audit_entries WHERE seq = 1")

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == 1


def test_reordered_entries_are_named(runtime):
    write_entries(runtime)

    # Swap the positions of entries 2 and 3 through a temporary sequence number.
    execute(runtime, "UPDATE audit_entries SET seq = -3 WHERE seq = 3")
    execute(runtime, "UPDATE audit_entries SET seq = 3 WHERE seq = 2")
    execute(runtime, "UPDATE audit_entries SET seq = 2 WHERE seq = -3")

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == 2


def test_truncated_tail_is_caught_through_the_chain_head(runtime):
    write_entries(runtime)

    execute(runtime, "DELETE FROM audit_entries WHERE seq >= 4")

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == 4
    assert result.entries == 3
    assert result.reason == "chain audit ends at position 3 but its head records 5"


def test_a_head_naming_another_last_hash_is_caught_before_its_mac(runtime):
    """The head's hash must be the last entry's even when the position agrees (kills the
    mutant of ``_head_fault``'s ``or`` to ``and``, which leaves it to the head MAC)."""
    write_entries(runtime)

    execute(runtime, "UPDATE chain_heads SET entry_hash = :h WHERE chain = 'audit'", h=bytes(32))

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == ENTRIES + 1
    assert result.reason == "chain audit ends at position 5 but its head records 5"


def test_truncated_tail_with_rewound_head_is_caught_by_the_head_mac(runtime):
    """Rewinding ``chain_heads`` to the new end needs the audit key to MAC it."""
    write_entries(runtime)
    with runtime.database.transaction() as session:
        third_hash = session.scalar(select(AuditEntry.entry_hash).where(AuditEntry.seq == 3))

    execute(runtime, "DELETE FROM audit_entries WHERE seq >= 4")
    execute(
        runtime,
        "UPDATE chain_heads SET seq = 3, entry_hash = :hash WHERE chain = 'audit'",
        hash=third_hash,
    )

    result = verify(runtime)
    assert not result.ok
    # Named at the last entry the forged head claims (kills the mutants of that fault).
    assert result.first_bad == 3
    assert result.reason == "the head of chain audit: MAC not made with the audit key"


def test_chain_recomputed_without_the_mac_key_is_named_at_the_edit(runtime):
    """An attacker edits entry 3 and rebuilds every hash, but can only MAC with a wrong key."""
    write_entries(runtime)
    wrong_key = secrets.token_bytes(32)
    with runtime.database.transaction() as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        session.expunge_all()

    prev_hash = entries[1].entry_hash
    for entry in entries[2:]:
        action = "test.rewritten" if entry.seq == 3 else entry.action
        row = {
            "id": entry.id,
            "seq": entry.seq,
            "chain": entry.chain,
            "position": entry.position,
            "format": entry.format,
            "at": entry.at,
            "actor_id": entry.actor_id,
            "actor_role": entry.actor_role,
            "action": action,
            "outcome": entry.outcome,
            "target_type": entry.target_type,
            "target_id": entry.target_id,
            "subject_id": entry.subject_id,
            "address": entry.address,
            "address_hash": entry.address_hash,
            "details": entry.details,
        }
        entry_hash = audit_chain.entry_hash(row, prev_hash)
        execute(
            runtime,
            "UPDATE audit_entries SET action = :action, prev_hash = :prev, "
            "entry_hash = :hash, mac = :mac WHERE seq = :seq",
            action=action,
            prev=prev_hash,
            hash=entry_hash,
            mac=crypto.mac(wrong_key, entry_format._MAC_LABEL, entry_hash),
            seq=entry.seq,
        )
        prev_hash = entry_hash
    execute(
        runtime,
        "UPDATE chain_heads SET entry_hash = :hash, mac = :mac WHERE chain = 'audit'",
        hash=prev_hash,
        mac=audit_chain.head_mac(wrong_key, ENTRIES, prev_hash),
    )

    # The forgery is internally consistent: with the attacker's key it would verify.
    with runtime.database.transaction() as session:
        assert not audit.verify(session, wrong_key).ok  # entries 1-2 still carry the real MAC
    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == 3
    assert result.reason == "MAC not made with the audit key"
