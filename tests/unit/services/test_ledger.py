"""The sealed-archive ledger records each sealing (SECURITY-MODEL "Deletion, sealed archive,
retention"): the honest path the tampering tests break.

Conversations are sealed through the deletion service (real crypto, real database). Each
sealing appends one record, chained to the one before and signed with the archive-signing
key; the record holds metadata and the content's hash, never the content; the member's and
the physician's key wraps go and the archive's stays. Members sealing at the same time
still leave one chain, with no fork. That someone with write access to the database cannot
change what the ledger vouches for unseen is in test_ledger_content.py (any byte of the sealed
content) and test_ledger_chain.py (a ledger field, a signature, a link, the order, the tail,
a chain re-signed with another key).
"""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import select

from medchat.archive import ledger
from medchat.models import (
    Account,
    ChainHead,
    Conversation,
    ConversationKeyWrap,
    ConversationStatus,
    Holder,
)
from medchat.services.deletion import DeletionService
from tests.support.accounts import make_member
from tests.support.archive import BODIES, SUBJECT, Sealed, records, seal_new, verify_ledger
from tests.support.conversations import start_conversation
from tests.support.sessions import sign_in


@pytest.fixture
def member(runtime, team):
    return sign_in(runtime, make_member(runtime)).principal


@pytest.fixture
def history(runtime, member) -> list[Sealed]:
    """Three sealed conversations: records 1, 2 and 3 of the ledger."""
    return [seal_new(runtime, member, n) for n in range(3)]


# -- the honest path --------------------------------------------------------------------------


def test_an_empty_ledger_verifies(runtime):
    report = verify_ledger(runtime)
    assert report.ok and report.records == 0 and report.head_seq == 0


def test_sealed_records_are_chained_signed_and_verify(runtime, member, history):
    report = verify_ledger(runtime)
    assert report.ok, report
    assert (report.records, report.head_seq) == (3, 3)
    rows = records(runtime)
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == ledger.GENESIS_HASH
    assert [r.prev_hash for r in rows[1:]] == [r.record_hash for r in rows[:-1]]
    assert report.head_hash == rows[-1].record_hash.hex()
    signer = runtime.archive_signer
    for row in rows:
        assert row.signing_key_id == signer.fingerprint
        assert ledger.RecordFields.of(row).record_hash() == row.record_hash
        ledger.verify_record_signature(
            signer.public_key, row.signing_key_id, row.record_hash, row.signature
        )


def test_a_record_holds_metadata_and_the_content_hash_never_content(runtime, member, history):
    record = records(runtime)[0]
    with runtime.database.transaction() as session:
        account = session.get(Account, member.id)
        conversation = session.get(Conversation, history[0].conversation_id)
        assert record.member_index == account.email_index
        assert conversation.status == ConversationStatus.SEALED
        assert conversation.sealed_at == record.sealed_at
        assert record.question_at == conversation.created_at
    assert (record.kind, record.reason, record.message_count) == ("sealed", "member_request", 2)
    metadata = json.loads(record.metadata_json)
    assert metadata["member_id"] == str(member.id)
    assert metadata["attachment_count"] == 1
    stored = record.metadata_json + record.reason
    for secret in (SUBJECT, *BODIES, "scan-0.pdf", "Durand", "@example.org"):
        assert secret not in stored


def test_sealing_destroys_the_member_and_physician_wraps_and_keeps_the_archive_wrap(
    runtime, team, member, history
):
    compliance = sign_in(runtime, team.compliance).principal
    with runtime.database.transaction() as session:
        holders = list(
            session.scalars(
                select(ConversationKeyWrap.holder).where(
                    ConversationKeyWrap.conversation_id == history[0].conversation_id
                )
            )
        )
        conversation = session.get(Conversation, history[0].conversation_id)
        dek = runtime.conversation_keys(session).open_key(
            conversation, compliance.keyring, Holder.ARCHIVE
        )
    assert holders == [Holder.ARCHIVE]
    assert len(dek.of(1)) == 32


def test_sealing_twice_is_not_found_and_appends_nothing(runtime, member, history):
    from medchat.errors import NotFound

    with pytest.raises(NotFound), runtime.database.transaction() as session:
        DeletionService(session, runtime).delete_own(member, history[0].conversation_id)
    assert len(records(runtime)) == 3


# -- concurrency -----------------------------------------------------------------------------


def test_concurrent_sealings_leave_one_valid_chain(runtime, team):
    """Many members seal at once (PostgreSQL: real concurrent transactions queue on the head's
    row lock; SQLite: the write lock serialises them): consecutive seqs, no fork."""
    workers, per_worker = 4, 3
    members = [sign_in(runtime, make_member(runtime)).principal for _ in range(workers)]
    started = {
        m.id: [
            start_conversation(runtime, m, subject=None, bodies=["Q"]).id for _ in range(per_worker)
        ]
        for m in members
    }
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work(principal) -> None:
        try:
            barrier.wait()
            for conversation_id in started[principal.id]:
                with runtime.database.transaction() as session:
                    DeletionService(session, runtime).delete_own(principal, conversation_id)
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(m,)) for m in members]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    expected = workers * per_worker
    report = verify_ledger(runtime)
    assert report.ok, report
    assert (report.records, report.head_seq) == (expected, expected)
    rows = records(runtime)
    assert [r.seq for r in rows] == list(range(1, expected + 1))
    assert len({r.conversation_id for r in rows}) == expected
    with runtime.database.transaction() as session:
        head = session.get(ChainHead, ledger.ARCHIVE_CHAIN)
        assert head.seq == expected
