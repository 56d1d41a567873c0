"""One sealed record checked before a retrieval opens it (``ledger.check_record``).

A retrieval reads one record, not the whole chain: its fields must match its hash, the hash
must carry the pinned archive-signing key's signature, and the conversation's stored content
must still hash to what the record vouches for. Each edit below is one a database writer can
make; each must be refused, and the untouched record must pass (so the refusals are about
the edit, not the set-up).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import replace

import pytest

from access_control import crypto
from medchat.archive import ledger
from medchat.archive.signing import load_archive_signer
from medchat.models import ArchiveRecord
from tests.support.archive import flip_byte, sealed_history
from tests.support.tampering import execute_sql


@pytest.fixture
def history(runtime):
    return sealed_history(runtime, count=2)


def check(runtime, record_id: uuid.UUID, public_key: bytes | None = None) -> None:
    with runtime.database.transaction() as session:
        record = session.get(ArchiveRecord, record_id)
        ledger.check_record(session, public_key or runtime.archive_signer.public_key, record)


def test_an_untouched_record_passes(runtime, history):
    for sealed in history:
        check(runtime, sealed.record.id)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("reason", "retention"),
        ("message_count", 7),
        ("metadata_json", '{"v":1}'),
        ("content_hash", bytes(32)),
        ("member_index", bytes(32)),
        ("prev_hash", bytes(32)),
        ("seq", 9),
    ],
)
def test_a_field_edited_without_its_hash_is_refused(runtime, history, column, value):
    target = history[1].record
    execute_sql(
        runtime, f"UPDATE archive_records SET {column} = :v WHERE id = :id", v=value, id=target.id
    )

    with pytest.raises(crypto.IntegrityCheckFailed):
        check(runtime, target.id)
    check(runtime, history[0].record.id)


def test_a_hash_recomputed_over_edited_fields_fails_the_signature(runtime, history):
    """The writer recomputes the hash; only the signing key's holder could sign it."""
    target = history[1].record
    edited = replace(ledger.RecordFields.of(target), reason="retention")
    execute_sql(
        runtime,
        "UPDATE archive_records SET reason = :r, record_hash = :h WHERE id = :id",
        r=edited.reason,
        h=edited.record_hash(),
        id=target.id,
    )

    with pytest.raises(crypto.IntegrityCheckFailed):
        check(runtime, target.id)


def test_a_record_signed_by_another_key_is_refused_under_the_pin(runtime, history):
    """Re-signed by the writer's own key: valid under that key, refused under the pin."""
    target = history[1].record
    attacker = load_archive_signer(secrets.token_bytes(32), "", production=False)
    edited = replace(ledger.RecordFields.of(target), reason="retention")
    record_hash = edited.record_hash()
    execute_sql(
        runtime,
        "UPDATE archive_records SET reason = :r, record_hash = :h, signature = :s,"
        " signing_key_id = :k WHERE id = :id",
        r=edited.reason,
        h=record_hash,
        s=attacker.sign(ledger._SIGNATURE_LABEL, attacker.fingerprint, record_hash),
        k=attacker.fingerprint,
        id=target.id,
    )

    check(runtime, target.id, public_key=attacker.public_key)
    with pytest.raises(crypto.IntegrityCheckFailed):
        check(runtime, target.id)


def test_one_byte_of_the_signature_edited_is_refused(runtime, history):
    flip_byte(runtime, "archive_records", "signature", history[1].record.id, 3)

    with pytest.raises(crypto.IntegrityCheckFailed):
        check(runtime, history[1].record.id)


@pytest.mark.parametrize(
    ("table", "column", "row"),
    [
        ("messages", "body_ciphertext", lambda sealed: sealed.message_ids[0]),
        ("attachments", "data_ciphertext", lambda sealed: sealed.attachment_id),
        ("conversations", "subject_ciphertext", lambda sealed: sealed.conversation_id),
    ],
)
def test_stored_content_that_no_longer_matches_is_refused(runtime, history, table, column, row):
    target = history[1]
    flip_byte(runtime, table, column, row(target))

    with pytest.raises(crypto.IntegrityCheckFailed):
        check(runtime, target.record.id)
    check(runtime, history[0].record.id)


def test_content_gone_is_refused(runtime, history):
    target = history[1]
    execute_sql(runtime, "DELETE FROM conversations WHERE id = :id", id=target.conversation_id)

    with pytest.raises(crypto.IntegrityCheckFailed):
        check(runtime, target.record.id)
    check(runtime, history[0].record.id)
