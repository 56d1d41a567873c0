"""The audit log is an append-only hash chain that names the first entry someone broke.

SECURITY-MODEL "Audit": an edited, deleted, reordered or truncated entry and a chain
recomputed without the MAC key are all caught; a rolled-back change leaves no entry, a refusal
is still recorded, and concurrent writers never fork the chain. Tampering goes through raw SQL,
as someone with write access to the database would do it.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update

from access_control import crypto
from medchat import audit
from medchat.audit import chain as audit_chain
from medchat.audit import entry_format, verification
from medchat.audit.addresses import AddressKeys, reveal
from medchat.db import table_of
from medchat.models import AuditEntry, ChainHead

ENTRIES = 5


@pytest.fixture
def app(make_app):
    """One chain, so positions are the sequence numbers these tests tamper with by hand;
    tests/unit/services/test_audit_chains.py covers several chains."""
    return make_app(audit_chains=1)


def write_entries(runtime, count: int = ENTRIES, *, per_transaction: int = 1) -> None:
    """Append ``count`` entries, ``per_transaction`` per commit (each commit appends)."""
    written = 0
    while written < count:
        with runtime.database.transaction() as session:
            for _ in range(min(per_transaction, count - written)):
                written += 1
                audit.record(
                    session,
                    f"test.action_{written}",
                    target_type="thing",
                    target_id=f"thing-{written}",
                    details={"n": written},
                )


def verify(runtime) -> audit.VerifyResult:
    with runtime.database.transaction() as session:
        return audit.verify(session, runtime.keys.audit_mac)


def execute(runtime, sql: str, **params) -> None:
    with runtime.database.transaction() as session:
        session.execute(text(sql), params)


def seqs(runtime) -> list[int]:
    with runtime.database.transaction() as session:
        return list(session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)))


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


def test_failed_transaction_leaves_no_entry(runtime):
    write_entries(runtime, 1)

    with pytest.raises(RuntimeError), runtime.database.transaction() as session:
        audit.record(session, "test.never_happened")
        raise RuntimeError("the change fails")

    with runtime.database.transaction() as session:
        actions = list(session.scalars(select(AuditEntry.action)))
        head = session.get(ChainHead, audit.AUDIT_CHAIN)
        assert head is not None
        assert head.seq == 1
    assert actions == ["test.action_1"]
    assert verify(runtime).ok


def test_refusal_is_recorded_after_rollback_as_denied(runtime):
    context = audit.AuditContext(actor_role="member", address="192.0.2.10")

    with pytest.raises(PermissionError), runtime.database.transaction() as session:
        audit.set_context(session, context)
        audit.record(session, "test.change_that_is_undone")
        audit.record_on_rollback(session, "test.refused", details={"code": "forbidden"})
        raise PermissionError

    with runtime.database.transaction() as session:
        entries = list(session.scalars(select(AuditEntry)))
    assert [(e.action, e.outcome) for e in entries] == [("test.refused", "denied")]
    assert entries[0].address is None and entries[0].address_sealed is not None
    keys = AddressKeys(seal=runtime.keys.profile, commit=runtime.keys.audit_mac)
    assert reveal(keys, entries[0]) == "192.0.2.10"
    assert entries[0].actor_role == "member"
    assert entries[0].details == '{"code":"forbidden"}'
    assert verify(runtime).ok


def test_record_on_rollback_writes_nothing_when_the_transaction_commits(runtime):
    with runtime.database.transaction() as session:
        audit.record(session, "test.done")
        audit.record_on_rollback(session, "test.refused")

    with runtime.database.transaction() as session:
        actions = list(session.scalars(select(AuditEntry.action)))
    assert actions == ["test.done"]


def test_concurrent_writers_leave_one_unbroken_chain(runtime):
    threads, transactions, per_transaction = 4, 25, 2
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for n in range(transactions):
                with runtime.database.transaction() as session:
                    for k in range(per_transaction):
                        audit.record(
                            session, "test.concurrent", details={"w": worker, "n": n, "k": k}
                        )
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in workers)
    assert errors == []

    expected = threads * transactions * per_transaction
    result = verify(runtime)
    assert result.ok, result.reason
    assert result.entries == expected
    assert result.head_seq == expected
    assert seqs(runtime) == list(range(1, expected + 1))
    with runtime.database.transaction() as session:
        details = set(session.scalars(select(AuditEntry.details)))
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == expected
    assert len(details) == expected  # every recorded entry landed exactly once


def test_many_entries_of_one_transaction_chain_in_the_order_recorded(runtime):
    write_entries(runtime, 2)
    write_entries(runtime, 30, per_transaction=30)  # one INSERT for all, then the head

    result = verify(runtime)

    assert result.ok, result.reason
    assert result.entries == result.head_seq == 32
    with runtime.database.transaction() as session:
        details = list(session.scalars(select(AuditEntry.details).order_by(AuditEntry.seq)))
    assert details[2:] == [f'{{"n":{n}}}' for n in range(1, 31)]


def test_concurrent_writers_of_single_and_batched_entries_leave_one_unbroken_chain(runtime):
    threads, transactions = 4, 15
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for n in range(transactions):
                with runtime.database.transaction() as session:
                    # Workers alternate one-entry commits and larger batches.
                    for k in range(1 if (worker + n) % 2 else 4):
                        audit.record(session, "test.mixed", details={"w": worker, "n": n, "k": k})
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in workers)
    assert errors == []

    expected = sum(1 if (w + n) % 2 else 4 for w in range(threads) for n in range(transactions))
    result = verify(runtime)
    assert result.ok, result.reason
    assert result.entries == result.head_seq == expected
    assert seqs(runtime) == list(range(1, expected + 1))
