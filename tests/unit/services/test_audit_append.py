"""Appends within transactions: the audit log records what committed, and every refusal.

SECURITY-MODEL "Audit": a rolled-back change leaves no entry, a refusal is still recorded (after
the rollback, as denied), and concurrent writers, of single entries or of batches, never fork
the chain: every commit's entries land once, in the order recorded, with gapless sequence
numbers. How the append's statements meet the commit is test_audit_commit.py's subject.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from medchat import audit
from medchat.audit.addresses import AddressKeys, reveal
from medchat.models import AuditEntry, ChainHead
from tests.support.audit import seqs, verify, write_entries


@pytest.fixture
def app(make_app):
    """One chain, so a test reads its single head and its sequence numbers are its positions;
    tests/unit/services/test_audit_chains.py covers several chains."""
    return make_app(audit_chains=1)


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
