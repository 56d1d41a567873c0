"""The audit log is an append-only hash chain that names the first entry someone broke.

SECURITY-MODEL "Audit": an edited, deleted, reordered or truncated entry and a chain
recomputed without the MAC key are all caught; a rolled-back change leaves no entry, a refusal
is still recorded, and concurrent writers never fork the chain. Tampering goes through raw SQL,
as someone with write access to the database would do it.
"""

from __future__ import annotations

import secrets
import threading

import pytest
from sqlalchemy import func, select, text

from access_control import crypto
from medchat import audit
from medchat.audit import chain as audit_chain
from medchat.audit.addresses import AddressKeys, reveal
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


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("action", "test.innocent"),
        ("details", '{"n":99}'),
        ("outcome", "denied"),
        # The clear column is empty in format 3: one planted there is caught as well.
        ("address", "198.51.100.1"),
        ("address_hash", bytes(32)),
    ],
)
def test_edited_entry_is_named(runtime, column, value):
    write_entries(runtime)

    execute(runtime, f"UPDATE audit_entries SET {column} = :value WHERE seq = 3", value=value)

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == 3
    assert "hash" in (result.reason or "")


def test_deleted_middle_entry_is_named(runtime):
    write_entries(runtime)

    execute(runtime, "DELETE FROM audit_entries WHERE seq = 3")

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == 3
    assert "missing" in (result.reason or "")


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
    assert "head" in (result.reason or "")


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
            mac=crypto.mac(wrong_key, audit_chain._MAC_LABEL, entry_hash),
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
    assert "MAC" in (result.reason or "")


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
