"""The sealed-archive ledger names the first of its own records someone broke (SECURITY-MODEL
"Deletion, sealed archive, retention").

A database writer need not touch the sealed content: they can edit the ledger. Each record's
hash covers every field and the pinned archive-signing key signs the hash; each record links
to the one before it, and the chain's head carries a MAC, so tampering through raw SQL with
any ledger field, a signature, a link, the order or the tail is named at its record. So is a
whole chain re-signed with an Ed25519 key of the attacker's own: verification uses the pinned
public key, so only the holder of ``archive-signing.key`` can make records that pass. Edits
to the sealed content are in test_ledger_content.py, the honest path in test_ledger.py.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from access_control import crypto, signatures
from medchat.archive import ledger
from medchat.archive.signing import load_archive_signer, verify_signed
from medchat.audit.hash_chain import ARCHIVE
from tests.support.accounts import make_member
from tests.support.archive import (
    Sealed,
    assert_names,
    example_record_fields,
    flip_byte,
    plant_past_head,
    records,
    seal,
    seal_new,
    verify_ledger,
)
from tests.support.conversations import start_conversation
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql


@pytest.fixture
def member(runtime, team):
    return sign_in(runtime, make_member(runtime)).principal


@pytest.fixture
def history(runtime, member) -> list[Sealed]:
    """Three sealed conversations: records 1, 2 and 3 of the ledger."""
    return [seal_new(runtime, member, n) for n in range(3)]


# -- tampering with the ledger itself -----------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("reason", "retention"),
        ("message_count", 1),
        ("metadata_json", '{"v":1}'),
        ("content_hash", bytes(32)),
        ("member_index", bytes(32)),
        ("kind", "destroyed"),
        ("conversation_id", uuid.uuid4()),
    ],
)
def test_an_edited_ledger_field_is_named(runtime, history, column, value):
    target = history[1]
    execute_sql(
        runtime,
        f"UPDATE archive_records SET {column} = :value WHERE id = :id",
        value=value,
        id=target.record.id,
    )

    assert_names(verify_ledger(runtime), target, "hash")


def _changed(value: object) -> object:
    if isinstance(value, uuid.UUID):
        return uuid.UUID(int=value.int + 1)
    if isinstance(value, datetime):
        return value + timedelta(microseconds=1)
    if isinstance(value, bytes):
        return bytes(32 - len(value)) + value[1:] + b"\x00"
    if isinstance(value, int):
        return value + 1
    return f"{value}x"


@pytest.mark.parametrize("field", sorted(ledger.RecordFields.__dataclass_fields__))
def test_a_record_hash_covers_every_field(field):
    """What the hash does not cover, a database writer can change under a valid signature (the
    signature is over the hash). Kills each mutant of ``RecordFields.record_hash`` that drops a
    field or replaces it by None; the edits through SQL above and below reach the fields one by
    one, this reaches all of them (``refers_to``, ``id``, ``seq``, ``question_at`` included)."""
    fields = example_record_fields()
    edited = replace(fields, **{field: _changed(getattr(fields, field))})
    assert edited.record_hash() != fields.record_hash()


def test_an_edited_question_time_is_named(runtime, history):
    target = history[1]
    execute_sql(
        runtime,
        "UPDATE archive_records SET question_at = :value WHERE id = :id",
        value=runtime.clock.now().replace(year=2020),
        id=target.record.id,
    )
    assert_names(verify_ledger(runtime), target, "hash")


def test_an_edited_sealing_time_is_named(runtime, history):
    target = history[1]
    execute_sql(
        runtime,
        "UPDATE archive_records SET sealed_at = :value WHERE id = :id",
        value=runtime.clock.now().replace(year=2020),
        id=target.record.id,
    )
    assert_names(verify_ledger(runtime), target, "hash")


@pytest.mark.parametrize("column", ["signature", "record_hash", "prev_hash"])
def test_one_byte_of_a_signature_or_hash_edited_is_named(runtime, history, column):
    target = history[1]
    flip_byte(runtime, "archive_records", column, target.record.id, 5)

    report = verify_ledger(runtime)
    assert_names(report, target)


def test_a_broken_link_is_named(runtime, history):
    target = history[2]
    execute_sql(
        runtime,
        "UPDATE archive_records SET prev_hash = :value WHERE id = :id",
        value=secrets.token_bytes(32),
        id=target.record.id,
    )
    assert_names(verify_ledger(runtime), target, "link")


def test_reordered_records_are_named(runtime, history):
    execute_sql(runtime, "UPDATE archive_records SET seq = -3 WHERE seq = 3")
    execute_sql(runtime, "UPDATE archive_records SET seq = 3 WHERE seq = 2")
    execute_sql(runtime, "UPDATE archive_records SET seq = 2 WHERE seq = -3")

    report = verify_ledger(runtime)
    assert not report.ok
    assert report.first_bad_seq == 2
    assert report.first_bad == history[2].record.id


def test_a_deleted_middle_record_is_named_at_the_gap(runtime, history):
    execute_sql(runtime, "DELETE FROM archive_records WHERE id = :id", id=history[1].record.id)

    report = verify_ledger(runtime)
    assert_names(report, history[2], "record 2 is missing")


def test_a_truncated_tail_is_caught_by_the_head(runtime, history):
    execute_sql(runtime, "DELETE FROM archive_records WHERE id = :id", id=history[2].record.id)

    report = verify_ledger(runtime)
    assert not report.ok
    assert report.first_bad_seq == 3
    assert report.records == 2
    assert "head" in (report.reason or "")


def test_a_truncated_tail_with_a_rewound_head_is_caught_by_the_head_mac(runtime, history):
    execute_sql(runtime, "DELETE FROM archive_records WHERE id = :id", id=history[2].record.id)
    execute_sql(
        runtime,
        "UPDATE chain_heads SET seq = 2, entry_hash = :hash WHERE chain = 'archive'",
        hash=history[1].record.record_hash,
    )

    report = verify_ledger(runtime)
    assert_names(report, history[1], "MAC")


def test_a_record_planted_past_the_head_is_named(runtime, history):
    """A row inserted after the last record, with no head update (that needs the key)."""
    planted = plant_past_head(runtime)

    report = verify_ledger(runtime)
    assert not report.ok
    assert (report.first_bad, report.first_bad_seq) == (planted, 4)
    assert "past the head" in (report.reason or "")


@pytest.mark.postgresql_only
def test_a_record_appended_while_verifying_is_left_for_the_next_walk(
    runtime, member, history, monkeypatch
):
    """The head is read first: a sealing that commits during the walk is not a false alarm."""
    if not runtime.database.is_postgresql:
        pytest.skip("SQLite holds the write lock for the whole walk; nothing appends meanwhile")
    extra = start_conversation(runtime, member, subject=None, bodies=["Late"])
    walk = ledger._batches

    def appending_first(session, size, last_seq):
        seal(runtime, member, extra.id)
        yield from walk(session, size, last_seq)

    monkeypatch.setattr(ledger, "_batches", appending_first)
    report = verify_ledger(runtime)
    assert report.ok, report
    assert (report.records, report.head_seq) == (3, 3)
    monkeypatch.undo()
    assert verify_ledger(runtime).records == 4


def test_a_chain_re_signed_with_another_key_is_refused(runtime, history):
    """The attacker edits record 2, recomputes every hash after it and signs with a key of
    their own (naming it or keeping the pinned key's name): the pinned key refuses both."""
    attacker = load_archive_signer(secrets.token_bytes(32), "", production=False)
    rows = records(runtime)
    prev = rows[0].record_hash
    for row in rows[1:]:
        fields = replace(
            ledger.RecordFields.of(row),
            prev_hash=prev,
            reason="retention" if row.seq == 2 else row.reason,
        )
        record_hash = fields.record_hash()
        signature = attacker.sign(ledger._SIGNATURE_LABEL, attacker.fingerprint, record_hash)
        execute_sql(
            runtime,
            "UPDATE archive_records SET reason = :reason, prev_hash = :prev, record_hash = :hash,"
            " signature = :sig, signing_key_id = :kid WHERE id = :id",
            reason=fields.reason,
            prev=prev,
            hash=record_hash,
            sig=signature,
            kid=attacker.fingerprint,
            id=row.id,
        )
        prev = record_hash
    execute_sql(
        runtime,
        "UPDATE chain_heads SET entry_hash = :hash, mac = :mac WHERE chain = 'archive'",
        hash=prev,
        mac=ARCHIVE.head_mac(attacker.head_mac_key, 3, prev),
    )
    # Internally consistent: under the attacker's own key only record 1 (the real key's) fails.
    with runtime.database.transaction() as session:
        forged = ledger.verify(session, attacker.public_key, attacker.head_mac_key)
    assert forged.first_bad_seq == 1

    assert_names(verify_ledger(runtime), history[1], "pinned")
    # Claiming the pinned key's name does not help: the signature is checked under it.
    execute_sql(
        runtime,
        "UPDATE archive_records SET signing_key_id = :kid WHERE seq >= 2",
        kid=runtime.archive_signer.fingerprint,
    )
    assert_names(verify_ledger(runtime), history[1], "signature")


def test_content_problems_come_before_a_later_break_in_the_same_batch(runtime, history):
    flip_byte(runtime, "messages", "body_ciphertext", history[0].message_ids[0])
    flip_byte(runtime, "archive_records", "signature", history[2].record.id)

    assert_names(verify_ledger(runtime), history[0], "content")


def test_verify_walks_in_batches(runtime, member, history):
    more = [seal_new(runtime, member, n) for n in range(3, 6)]
    assert verify_ledger(runtime, batch=2).ok

    flip_byte(runtime, "attachments", "data_ciphertext", more[1].attachment_id)
    report = verify_ledger(runtime, batch=2)
    assert_names(report, more[1], "content")


def test_the_head_mac_key_and_signatures_are_domain_separated(runtime, history):
    """A record signature is not a signature of anything else the key signs."""
    row = records(runtime)[0]
    with pytest.raises(crypto.IntegrityCheckFailed):
        verify_signed(
            runtime.archive_signer.public_key,
            row.signature,
            "medchat/archive-export/v1",
            row.signing_key_id,
            row.record_hash,
        )
    with pytest.raises(crypto.IntegrityCheckFailed):
        signatures.verify_signature(
            runtime.archive_signer.public_key, row.signature, row.record_hash
        )
