"""What ``medchat archive verify`` reports, to the word, for each way the ledger can break.

The report is what the operator acts on: which record (id and sequence number), why, how
many records linked before it and the head to anchor. test_ledger_content.py and
test_ledger_chain.py show that each attack is caught; this file pins the whole report of
each, so a wrong sequence number, a lost id or a changed reason is a failure too.
"""

from __future__ import annotations

import secrets
from typing import Any, cast

import pytest
from sqlalchemy import select

from medchat.archive import ledger
from medchat.models import ArchiveRecord, ChainHead, Conversation
from tests.support.accounts import make_member
from tests.support.archive import (
    Sealed,
    append_signed,
    flip_byte,
    plant_past_head,
    seal_new,
    sealed_history,
    verify_ledger,
)
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql


@pytest.fixture
def history(runtime) -> list[Sealed]:
    return sealed_history(runtime, count=3)


def head_hash(runtime) -> str:
    with runtime.database.engine.connect() as connection:
        value = connection.execute(
            select(ChainHead.entry_hash).where(ChainHead.chain == ledger.ARCHIVE_CHAIN)
        ).scalar_one()
    return bytes(value).hex()


def refused(
    runtime, *, records: int, bad: Sealed | None, seq: int | None, reason: str, head_seq: int = 3
) -> dict[str, Any]:
    return {
        "ok": False,
        "records": records,
        "first_bad": None if bad is None else str(bad.record.id),
        "first_bad_seq": seq,
        "reason": reason,
        "head_seq": head_seq,
        "head_hash": head_hash(runtime),
    }


def test_an_intact_ledger_reports_its_head(runtime, history):
    assert verify_ledger(runtime).as_dict() == {
        "ok": True,
        "records": 3,
        "first_bad": None,
        "first_bad_seq": None,
        "reason": None,
        "head_seq": 3,
        "head_hash": history[2].record.record_hash.hex(),
    }


def test_an_empty_ledger_reports_the_genesis_head(runtime):
    assert verify_ledger(runtime).as_dict() == {
        "ok": True,
        "records": 0,
        "first_bad": None,
        "first_bad_seq": None,
        "reason": None,
        "head_seq": 0,
        "head_hash": bytes(32).hex(),
    }


def test_a_missing_head(runtime, history):
    execute_sql(runtime, "DELETE FROM chain_heads WHERE chain = 'archive'")

    assert verify_ledger(runtime).as_dict() == {
        "ok": False,
        "records": 0,
        "first_bad": None,
        "first_bad_seq": None,
        "reason": "the ledger head is missing",
        "head_seq": 0,
        "head_hash": "",
    }


def test_content_gone_names_the_earliest_such_record(runtime, history):
    """By sequence number, not by id: the pair chosen has the later record's id first
    (sealing more until the ids of two records are in the other order)."""
    member = sign_in(runtime, make_member(runtime)).principal
    while not (pair := _ids_out_of_order(history)):
        history.append(seal_new(runtime, member, len(history)))
    earlier, later = pair
    for sealed in (later, earlier):
        execute_sql(runtime, "DELETE FROM conversations WHERE id = :id", id=sealed.conversation_id)

    assert verify_ledger(runtime).as_dict() == refused(
        runtime,
        records=len(history),
        bad=earlier,
        seq=earlier.record.seq,
        reason="its conversation's content is gone with no destroyed record",
        head_seq=len(history),
    )


def _ids_out_of_order(history: list[Sealed]) -> tuple[Sealed, Sealed] | None:
    for i, earlier in enumerate(history):
        for later in history[i + 1 :]:
            if str(later.record.id) < str(earlier.record.id):
                return earlier, later
    return None


def test_content_gone_in_an_earlier_batch_and_destroyed_in_a_later_one_verifies(runtime, history):
    """Retention's path across batches: record 1's content is found gone in the first batch,
    the "destroyed" record that accounts for it comes in a later one."""
    with runtime.database.transaction() as session:
        session.delete(session.get(Conversation, history[0].conversation_id))
        sealed = session.get(ArchiveRecord, history[0].record.id)
        ledger.append_destroyed(
            session, runtime.archive_signer, sealed, reason="retention", at=runtime.clock.now()
        )

    report = verify_ledger(runtime, batch=1).as_dict()
    assert (report["ok"], report["records"], report["reason"]) == (True, 4, None)


def test_a_signed_destroyed_record_naming_no_sealed_record(runtime, history):
    """Even the signing key's holder cannot destroy what was never sealed: the walk checks
    that a "destroyed" record refers to an earlier sealed record of the same conversation."""
    wrong_id = append_signed(
        runtime,
        history[1],
        kind=ledger.RecordKind.DESTROYED,
        refers_to=history[1].record.id,
        conversation_id=history[0].conversation_id,
    )

    report = verify_ledger(runtime).as_dict()
    assert report == {
        **refused(
            runtime,
            records=3,
            bad=None,
            seq=4,
            reason="destroys no earlier sealed record of its conversation",
            head_seq=4,
        ),
        "first_bad": str(wrong_id),
    }


def test_a_truncated_tail_names_the_first_record_missing(runtime, history):
    execute_sql(runtime, "DELETE FROM archive_records WHERE id = :id", id=history[2].record.id)

    assert verify_ledger(runtime).as_dict() == refused(
        runtime,
        records=2,
        bad=None,
        seq=3,
        reason="the chain ends at record 2 but its head is at 3",
    )


def test_a_head_hash_that_is_not_the_last_records(runtime, history):
    execute_sql(
        runtime,
        "UPDATE chain_heads SET entry_hash = :h WHERE chain = 'archive'",
        h=secrets.token_bytes(32),
    )

    assert verify_ledger(runtime).as_dict() == refused(
        runtime, records=3, bad=history[2], seq=3, reason="the head's hash is not the last's"
    )


def test_a_head_hash_edited_on_an_empty_ledger_names_no_record(runtime):
    execute_sql(
        runtime,
        "UPDATE chain_heads SET entry_hash = :h WHERE chain = 'archive'",
        h=secrets.token_bytes(32),
    )

    assert verify_ledger(runtime).as_dict() == refused(
        runtime,
        records=0,
        bad=None,
        seq=None,
        reason="the head's hash is not the last's",
        head_seq=0,
    )


def test_a_head_mac_not_made_with_the_key(runtime, history):
    execute_sql(
        runtime,
        "UPDATE chain_heads SET mac = :m WHERE chain = 'archive'",
        m=secrets.token_bytes(32),
    )

    assert verify_ledger(runtime).as_dict() == refused(
        runtime,
        records=3,
        bad=history[2],
        seq=3,
        reason="the head's MAC was not made with the key",
    )


def test_a_record_planted_past_the_head(runtime, history):
    planted_id = plant_past_head(runtime)

    report = verify_ledger(runtime).as_dict()
    assert report == {
        **refused(runtime, records=3, bad=None, seq=4, reason="a record past the head (at 3)"),
        "first_bad": str(planted_id),
    }


def test_a_signed_record_of_an_unknown_kind(runtime, history):
    """A kind the walk does not know is named, even under a valid signature."""
    odd_id = append_signed(runtime, history[0], kind=cast(ledger.RecordKind, "restored"))

    assert verify_ledger(runtime).as_dict() == {
        **refused(
            runtime, records=3, bad=None, seq=4, reason="unknown kind 'restored'", head_seq=4
        ),
        "first_bad": str(odd_id),
    }


def test_stored_content_that_no_longer_matches(runtime, history):
    flip_byte(runtime, "messages", "body_ciphertext", history[1].message_ids[0])

    assert verify_ledger(runtime).as_dict() == refused(
        runtime,
        records=3,
        bad=history[1],
        seq=2,
        reason="its conversation's stored content does not match",
    )


def test_the_walk_reads_at_most_a_batch_at_a_time(runtime, history, monkeypatch):
    """A ledger of years is never read into memory at once: each read holds ``batch`` rows."""
    read = ledger._batches
    sizes: list[int] = []

    def counted(session, size, last_seq):
        for rows in read(session, size, last_seq):
            sizes.append(len(rows))
            yield rows

    monkeypatch.setattr(ledger, "_batches", counted)

    assert verify_ledger(runtime, batch=2).ok
    assert sizes == [2, 1]


@pytest.mark.parametrize(
    ("statement", "bad", "seq", "linked", "reason"),
    [
        ("DELETE FROM archive_records WHERE seq = 2", 2, 3, 1, "record 2 is missing"),
        ("UPDATE archive_records SET seq = 0 WHERE seq = 1", 0, 0, 0, "out of order"),
        (
            "UPDATE archive_records SET prev_hash = :r WHERE seq = 2",
            1,
            2,
            1,
            "does not link to the previous record",
        ),
        (
            "UPDATE archive_records SET reason = 'edited' WHERE seq = 2",
            1,
            2,
            1,
            "its fields do not match its hash",
        ),
        (
            "UPDATE archive_records SET signing_key_id = :r WHERE seq = 2",
            1,
            2,
            1,
            "names a signing key that is not the pinned one",
        ),
        (
            "UPDATE archive_records SET signature = :s WHERE seq = 2",
            1,
            2,
            1,
            "its signature is not the pinned archive-signing key's",
        ),
        (
            "UPDATE conversations SET status = 'open' WHERE id IN"
            " (SELECT conversation_id FROM archive_records WHERE seq = 2)",
            1,
            2,
            3,
            "its conversation was made live again",
        ),
    ],
    ids=["gap", "order", "link", "fields", "key", "signature", "live"],
)
def test_each_break_in_the_walk(runtime, history, statement, bad, seq, linked, reason):
    execute_sql(runtime, statement, r=secrets.token_hex(8), s=secrets.token_bytes(64))

    report = verify_ledger(runtime).as_dict()
    assert (report["first_bad_seq"], report["reason"], report["records"]) == (seq, reason, linked)
    assert report["first_bad"] == str(history[bad].record.id)
