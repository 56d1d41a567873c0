"""Audit network addresses: sealed, committed to by a keyed hash, erased by retention after
``MEDCHAT_AUDIT_ADDRESS_DAYS`` with the chains still verifying (issue 16 item 3).

Tampering goes through raw SQL, as someone with write access to the database would do it.
"""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select, text

from access_control import crypto
from medchat import audit
from medchat.audit import chain as audit_chain
from medchat.audit.hash_chain import GENESIS_HASH
from medchat.models import AuditEntry
from medchat.services.audit_log import AuditLogService
from medchat.services.retention import RetentionService
from tests.support.dump import database_dump
from tests.support.leaks import found_in

ADDRESS = "203.0.113.77"
OTHER = "2001:db8::4242"


@pytest.fixture
def app(make_app):
    """One chain, so positions are sequence numbers (legacy entries are written by hand)."""
    return make_app(audit_chains=1)


def write(runtime, address: str | None, action: str = "test.action") -> None:
    """An entry by a clinician: the admin view shows a staff member's address (a member's it
    withholds, test_admin_audit_pseudonyms.py)."""
    with runtime.database.transaction() as session:
        context = audit.AuditContext(actor_id=uuid.uuid4(), actor_role="clinician", address=address)
        audit.set_context(session, context)
        audit.record(session, action, details={"n": 1})


def entries(runtime) -> list[AuditEntry]:
    with runtime.database.transaction() as session:
        rows = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        session.expunge_all()
    return rows


def shown(runtime) -> list[dict]:
    with runtime.database.transaction() as session:
        service = AuditLogService(session, runtime)
        # In the log's order: without it PostgreSQL returns the rows as they lie on disk.
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.seq))
        return [service.shown(e) for e in entries]


def verify(runtime) -> audit.VerifyResult:
    with runtime.database.transaction() as session:
        return audit.verify(session, runtime.keys.audit_mac)


def execute(runtime, sql: str, **params) -> None:
    with runtime.database.transaction() as session:
        session.execute(text(sql), params)


def run_retention(runtime):
    return RetentionService(runtime).run()


def test_an_address_is_stored_sealed_and_shown_to_the_admin_view(runtime):
    write(runtime, ADDRESS)
    write(runtime, OTHER)
    write(runtime, None)

    assert found_in(database_dump(runtime.database.engine), {"address": ADDRESS}) == []
    stored = entries(runtime)
    assert [e.format for e in stored] == [3, 3, 3]
    assert all(e.address is None for e in stored)
    assert stored[2].address_hash is None and stored[2].address_sealed is None
    # Salted: the same address twice gives two commitments.
    write(runtime, ADDRESS)
    assert entries(runtime)[3].address_hash != stored[0].address_hash
    assert [(s["address"], s["address_erased"]) for s in shown(runtime)] == [
        (ADDRESS, False),
        (OTHER, False),
        (None, False),
        (ADDRESS, False),
    ]
    assert verify(runtime).ok


def test_a_sealed_address_moved_to_another_entry_is_not_shown(runtime):
    write(runtime, ADDRESS)
    write(runtime, OTHER)
    first = entries(runtime)[0]
    execute(
        runtime,
        "UPDATE audit_entries SET address_sealed = :sealed WHERE seq = 2",
        sealed=first.address_sealed,
    )
    assert [s["address"] for s in shown(runtime)] == [ADDRESS, None]


def test_retention_erases_addresses_after_the_period_and_the_chains_still_verify(runtime, clock):
    write(runtime, ADDRESS, "test.old")
    clock.advance(days=100)
    write(runtime, OTHER, "test.recent")
    clock.advance(days=81)  # the first is 181 days old, the second 81

    result = run_retention(runtime)

    assert result.audit_addresses_erased == 1
    by_action = {s["action"]: s for s in shown(runtime)}
    assert (by_action["test.old"]["address"], by_action["test.old"]["address_erased"]) == (
        None,
        True,
    )
    assert by_action["test.recent"]["address"] == OTHER
    old = next(e for e in entries(runtime) if e.action == "test.old")
    assert old.address_sealed is None and old.address_hash is not None
    assert verify(runtime).ok
    run = next(s for s in shown(runtime) if s["action"] == "retention.run")
    assert run["details"]["audit_addresses_erased"] == 1
    # Nothing left to erase for another 99 days.
    assert run_retention(runtime).audit_addresses_erased == 0

    # Editing the commitment the hash covers is still caught after erasure.
    execute(
        runtime,
        "UPDATE audit_entries SET address_hash = :h WHERE seq = :seq",
        h=bytes(32),
        seq=old.seq,
    )
    result = verify(runtime)
    assert not result.ok and result.first_bad == old.seq


def test_the_period_is_the_setting(make_app, clock):
    runtime = make_app(audit_chains=1, audit_address_days=10).extensions["medchat"]
    write(runtime, ADDRESS)
    clock.advance(days=9)
    assert run_retention(runtime).audit_addresses_erased == 0
    clock.advance(days=2)
    assert run_retention(runtime).audit_addresses_erased == 1
    assert verify(runtime).ok


def _write_legacy(runtime, address: str, count: int) -> None:
    """Format 2 entries as the service wrote them before 0021 (clear address in the hash)."""
    key = runtime.keys.audit_mac
    prev = GENESIS_HASH
    at = runtime.clock.now()
    with runtime.database.transaction() as session:
        for position in range(1, count + 1):
            row = {
                "id": uuid.uuid4(),
                "seq": position,
                "chain": "audit",
                "position": position,
                "format": 2,
                "at": at,
                "actor_id": None,
                "actor_role": "clinician",
                "action": f"old.action_{position}",
                "outcome": "success",
                "target_type": None,
                "target_id": None,
                "subject_id": None,
                "address": address,
                "details": json.dumps({"n": position}),
            }
            hash_ = audit_chain.entry_hash(row, prev)
            session.add(
                AuditEntry(
                    **row, prev_hash=prev, entry_hash=hash_, mac=audit_chain.entry_mac(key, hash_)
                )
            )
            prev = hash_
        session.flush()
        session.execute(
            text(
                "UPDATE chain_heads SET seq = :s, entry_hash = :h, mac = :m WHERE chain = 'audit'"
            ),
            {"s": count, "h": prev, "m": audit_chain.head_mac(key, count, prev)},
        )
        if session.bind.dialect.name == "postgresql":
            session.execute(text("SELECT setval('audit_entry_seq', :n)"), {"n": count})


def test_legacy_entries_keep_verifying_and_are_erased_in_time(runtime, clock):
    _write_legacy(runtime, ADDRESS, 3)
    write(runtime, OTHER, "test.new")  # appended after them, format 3
    assert verify(runtime).ok
    assert [s["address"] for s in shown(runtime)] == [ADDRESS, ADDRESS, ADDRESS, OTHER]

    clock.advance(days=181)
    assert run_retention(runtime).audit_addresses_erased == 4
    assert verify(runtime).ok, verify(runtime).reason
    legacy = [e for e in entries(runtime) if e.format == 2]
    assert all(e.address is None and e.address_erasure_mac for e in legacy)
    assert all(s["address"] is None for s in shown(runtime))

    # An erased legacy entry edited, or given an address back, fails verification.
    execute(runtime, "UPDATE audit_entries SET action = 'old.innocent' WHERE seq = 2")
    assert verify(runtime).first_bad == 2
    execute(runtime, "UPDATE audit_entries SET action = 'old.action_2' WHERE seq = 2")
    assert verify(runtime).ok
    execute(runtime, "UPDATE audit_entries SET address = :a WHERE seq = 2", a=OTHER)
    assert verify(runtime).first_bad == 2


def test_a_legacy_entry_whose_hash_does_not_hold_is_not_erased(runtime, clock):
    _write_legacy(runtime, ADDRESS, 2)
    execute(runtime, "UPDATE audit_entries SET action = 'old.innocent' WHERE seq = 1")
    clock.advance(days=181)

    result = run_retention(runtime)

    assert (result.audit_addresses_erased, result.audit_addresses_refused) == (1, 1)
    first = entries(runtime)[0]
    assert first.address == ADDRESS and first.address_erasure_mac is None
    assert verify(runtime).first_bad == 1


def test_the_address_commitment_is_keyed_and_salted(runtime):
    write(runtime, ADDRESS)
    entry = entries(runtime)[0]
    assert entry.address_hash is not None
    # Not a plain hash of the address, nor a MAC of it without the sealed salt.
    assert entry.address_hash != crypto.digest(ADDRESS)
    for key in (runtime.keys.audit_mac, runtime.keys.profile, runtime.keys.integrity):
        assert entry.address_hash != crypto.mac(key, "medchat/audit-address-commitment/v1", ADDRESS)
