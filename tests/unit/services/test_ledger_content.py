"""The sealed-archive ledger names the record whose sealed content someone edited
(SECURITY-MODEL "Deletion, sealed archive, retention").

What the archive keeps of a sealed conversation (its encrypted subject, messages and
attachments, their order and authors) is hashed into the conversation's ledger record, which
the archive-signing key signs. Tampering goes through raw SQL, as someone with write access to
the database would do it: any byte of a sealed ciphertext, a message's metadata, a message
added, the conversation made live again or deleted without a record; each is named at the
sealed conversation's record. Content destroyed with its signed "destroyed" record (the
retention path) verifies. Edits to the ledger itself are in test_ledger_chain.py.
"""

from __future__ import annotations

import uuid

import pytest

from medchat.archive import ledger
from medchat.models import ArchiveRecord, Conversation
from tests.support.accounts import make_member
from tests.support.archive import Sealed, assert_names, flip_byte, seal_new, verify_ledger
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql


@pytest.fixture
def member(runtime, team):
    return sign_in(runtime, make_member(runtime)).principal


@pytest.fixture
def history(runtime, member) -> list[Sealed]:
    """Three sealed conversations: records 1, 2 and 3 of the ledger."""
    return [seal_new(runtime, member, n) for n in range(3)]


# -- tampering with what the archive keeps -----------------------------------------------------


@pytest.mark.parametrize(
    ("table", "column", "row"),
    [
        ("conversations", "subject_ciphertext", "conversation"),
        ("conversations", "key_commitment", "conversation"),
        ("messages", "body_ciphertext", "first message"),
        ("messages", "body_ciphertext", "last message"),
        ("attachments", "data_ciphertext", "attachment"),
        ("attachments", "filename_ciphertext", "attachment"),
        ("attachments", "content_type_ciphertext", "attachment"),
    ],
)
@pytest.mark.parametrize("position", [0, 20, -1])
def test_any_byte_of_a_sealed_ciphertext_edited_is_named(
    runtime, history, table, column, row, position
):
    target = history[1]
    row_id = {
        "conversation": target.conversation_id,
        "first message": target.message_ids[0],
        "last message": target.message_ids[-1],
        "attachment": target.attachment_id,
    }[row]
    flip_byte(runtime, table, column, row_id, position)

    assert_names(verify_ledger(runtime), target, "content does not match")


@pytest.mark.parametrize(
    ("statement", "params"),
    [
        ("UPDATE messages SET author_role = 'clinician' WHERE id = :id", {}),
        ("UPDATE messages SET seq = 7 WHERE id = :id", {}),
        ("DELETE FROM messages WHERE id = :id", {}),
    ],
    ids=["author", "position", "removed"],
)
def test_message_metadata_edited_is_named(runtime, history, statement, params):
    target = history[1]
    execute_sql(runtime, statement, id=target.message_ids[-1], **params)

    assert_names(verify_ledger(runtime), target, "content does not match")


def test_a_message_added_to_sealed_content_is_named(runtime, member, history):
    target = history[0]
    execute_sql(
        runtime,
        "INSERT INTO messages (id, conversation_id, seq, author_role, author_id, "
        "body_ciphertext, created_at) VALUES (:id, :cid, 9, 'member', :author, :body, :at)",
        id=uuid.uuid4(),
        cid=target.conversation_id,
        author=member.id,
        body=b"planted",
        at=runtime.clock.now(),
    )
    assert_names(verify_ledger(runtime), target, "content does not match")


def test_a_sealed_conversation_made_live_again_is_named(runtime, history):
    target = history[2]
    execute_sql(
        runtime,
        "UPDATE conversations SET status = 'open' WHERE id = :id",
        id=target.conversation_id,
    )

    assert_names(verify_ledger(runtime), target, "live again")


def test_content_removed_without_a_destroyed_record_is_named(runtime, history):
    target = history[1]
    execute_sql(runtime, "DELETE FROM conversations WHERE id = :id", id=target.conversation_id)

    assert_names(verify_ledger(runtime), target, "gone")


def test_content_destroyed_with_its_signed_record_verifies(runtime, history):
    """The retention path: content deleted and a "destroyed" record appended, one transaction."""
    target = history[1]
    with runtime.database.transaction() as session:
        session.delete(session.get(Conversation, target.conversation_id))
        sealed = session.get(ArchiveRecord, target.record.id)
        ledger.append_destroyed(
            session, runtime.archive_signer, sealed, reason="retention", at=runtime.clock.now()
        )

    report = verify_ledger(runtime)
    assert report.ok, report
    assert report.records == 4
