"""Re-sealing format-1 conversations to format 2 (``medchat keys reseal-content``).

Format-1 rows are written the way the code before format 2 wrote them
(``tests.support.legacy_content``). The re-seal runs with a clinician's signed-in keys, as the
CLI runs it. Attacks are raw SQL (``tests.support.tampering``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from access_control.crypto import DecryptionFailed
from access_control.roles import Role
from medchat.errors import ContentResealed, KeyIntegrityFailure, RoleKeyRequired
from medchat.identity.principal import Principal
from medchat.keys.content_upgrade import ContentResealer
from medchat.models import AuditEntry, Conversation, Message
from medchat.services.attachments import AttachmentService
from medchat.services.conversations import ConversationService
from medchat.services.deletion import DeletionService
from tests.support.accounts import Person, make_member, make_staff
from tests.support.conversations import reply, start_conversation
from tests.support.legacy_content import LegacyConversation, legacy_conversation
from tests.support.messaging import care_team
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql

QUESTION, ANSWER, FOLLOW_UP = "Is a rash normal?", "Not usually; send a photo.", "Here it is."
PHOTO = ("rash.png", "image/png", b"\x89PNG\r\n\x1a\n-photo-bytes")


@dataclass(repr=False)
class World:
    clinician: Person
    member: Principal
    doctor: Principal


@pytest.fixture
def world(runtime) -> World:
    team = care_team(runtime)
    member = sign_in(runtime, make_member(runtime)).principal
    return World(team.clinician, member, sign_in(runtime, team.clinician).principal)


def legacy(runtime, world: World, **kwargs) -> LegacyConversation:
    return legacy_conversation(
        runtime, world.member, world.doctor.id, [QUESTION, ANSWER, FOLLOW_UP], **kwargs
    )


def read(runtime, actor: Principal, conversation_id: uuid.UUID) -> list[tuple[int, str, str]]:
    """(seq, author, body) of every message, oldest first, read the way a request reads."""
    with runtime.database.transaction() as session:
        page = ConversationService(session, runtime).messages(
            actor, conversation_id, limit=100, ascending=True
        )
    return [(m.seq, m.author, m.body) for m in page.items]


def download(runtime, actor: Principal, attachment_id: uuid.UUID) -> tuple[str, str, bytes]:
    with runtime.database.transaction() as session:
        opened = AttachmentService(session, runtime).download(actor, attachment_id)
    return opened.filename, opened.content_type, opened.data


def version_of(runtime, conversation_id: uuid.UUID) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(
            select(Conversation.content_version).where(Conversation.id == conversation_id)
        )


def reseal(runtime, world: World, **options):
    max_batches = options.pop("max_batches", None)
    return ContentResealer(runtime, world.doctor, **options).run(max_batches=max_batches)


def audit_of(runtime, action: str) -> list[AuditEntry]:
    with runtime.database.transaction() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


EXPECTED = [(1, "member", QUESTION), (2, "clinician", ANSWER), (3, "member", FOLLOW_UP)]


def test_a_format_1_conversation_reads_the_same_before_and_after_the_reseal(runtime, world):
    old = legacy(runtime, world, attachment=PHOTO)
    assert read(runtime, world.member, old.id)[:3] == EXPECTED
    assert download(runtime, world.member, old.attachments[0]) == PHOTO
    # A message sent before the re-seal is sealed in the conversation's own format (1).
    reply(runtime, world.doctor, old.id, "Sent before the re-seal.")
    assert version_of(runtime, old.id) == 1

    result = reseal(runtime, world)

    assert (result.resealed, result.refused, result.remaining) == (1, [], 0)
    assert version_of(runtime, old.id) == 2
    # The doctor is shown the file under its neutral name (kind and order), the member theirs.
    for actor, name in ((world.member, "rash.png"), (world.doctor, "photo-1.png")):
        after = read(runtime, actor, old.id)
        assert after[:3] == EXPECTED
        assert after[3][1:] == ("member", "") and after[4][1:] == (
            "clinician",
            "Sent before the re-seal.",
        )
        assert download(runtime, actor, old.attachments[0]) == (name, *PHOTO[1:])
    (entry,) = audit_of(runtime, "content.reseal")
    assert (entry.target_id, entry.subject_id) == (str(old.id), world.member.id)
    assert json.loads(entry.details) == {"from": 1, "to": 2, "messages": 5, "attachments": 1}


def test_after_the_reseal_a_relabelled_row_is_refused(runtime, world):
    old = legacy(runtime, world)
    reseal(runtime, world)
    execute_sql(
        runtime, "UPDATE messages SET author_role = 'clinician' WHERE id = :id", id=old.messages[1]
    )
    with pytest.raises((DecryptionFailed, KeyIntegrityFailure)):  # 409 key_integrity_failed
        read(runtime, world.member, old.id)


def test_before_the_reseal_format_1_binds_no_author_which_is_why_it_exists(runtime, world):
    """The finding itself, on a format-1 conversation: a relabelled author goes unseen."""
    old = legacy(runtime, world)
    execute_sql(
        runtime, "UPDATE messages SET author_role = 'clinician' WHERE id = :id", id=old.messages[1]
    )
    assert read(runtime, world.member, old.id)[0] == (1, "clinician", QUESTION)


def test_setting_the_format_back_to_1_after_the_reseal_is_refused(runtime, world):
    old = legacy(runtime, world)
    reseal(runtime, world)
    execute_sql(runtime, "UPDATE conversations SET content_version = 1 WHERE id = :id", id=old.id)
    for actor in (world.member, world.doctor):
        with pytest.raises(KeyIntegrityFailure):
            read(runtime, actor, old.id)
    # A new conversation (format 2 from the start) likewise.
    fresh = start_conversation(runtime, world.member, subject=None, bodies=[QUESTION])
    assert version_of(runtime, fresh.id) == 2
    execute_sql(runtime, "UPDATE conversations SET content_version = 1 WHERE id = :id", id=fresh.id)
    with pytest.raises(KeyIntegrityFailure):
        read(runtime, world.member, fresh.id)


def test_an_interrupted_reseal_resumes_where_it_stopped(runtime, world):
    olds = [legacy(runtime, world) for _ in range(5)]
    seen: list[tuple[int, int]] = []

    first = reseal(runtime, world, batch_size=2, max_batches=1, progress=lambda *p: seen.append(p))

    assert (first.resealed, first.remaining, first.finished) == (2, 3, False)
    assert seen == [(2, 5)]
    assert sorted(version_of(runtime, o.id) for o in olds) == [1, 1, 1, 2, 2]
    for old in olds:  # both formats read meanwhile
        assert read(runtime, world.member, old.id) == EXPECTED

    second = reseal(runtime, world, batch_size=2)

    assert (second.resealed, second.remaining, second.finished) == (3, 0, True)
    assert {version_of(runtime, o.id) for o in olds} == {2}
    assert len(audit_of(runtime, "content.reseal")) == 5
    assert reseal(runtime, world).resealed == 0  # nothing left: a third run does nothing


def test_a_conversation_whose_key_set_fails_is_skipped_logged_and_audited(runtime, world, caplog):
    good, bad = legacy(runtime, world), legacy(runtime, world)
    execute_sql(
        runtime, "UPDATE conversations SET key_tag = :tag WHERE id = :id", tag=bytes(32), id=bad.id
    )

    result = reseal(runtime, world)

    assert (result.resealed, result.refused, result.remaining) == (1, [bad.id], 1)
    assert (version_of(runtime, good.id), version_of(runtime, bad.id)) == (2, 1)
    (entry,) = audit_of(runtime, "content.reseal_refused")
    assert (entry.outcome, entry.target_id, entry.subject_id) == (
        "failed",
        str(bad.id),
        world.member.id,
    )
    assert json.loads(entry.details) == {"reason": "key_set_altered"}
    assert str(bad.id) in caplog.text


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        # The member's question labelled as the doctor's (its author id still the member's).
        ("UPDATE messages SET author_role = 'clinician' WHERE id = :first", "author_mismatch"),
        # The doctor's answer put in the member's mouth.
        ("UPDATE messages SET author_id = :member WHERE id = :second", "author_mismatch"),
        # An attachment moved onto another conversation's message.
        ("UPDATE attachments SET message_id = :elsewhere", "attachment_outside_its_conversation"),
        # A body copied over another one.
        (
            "UPDATE messages SET body_ciphertext = (SELECT body_ciphertext FROM messages"
            " WHERE id = :first) WHERE id = :second",
            "body_does_not_open",
        ),
    ],
)
def test_a_format_1_conversation_that_fails_a_check_is_refused_not_vouched_for(
    runtime, world, tamper, reason
):
    old = legacy(runtime, world, attachment=PHOTO)
    other = legacy(runtime, world)
    params = {
        "first": old.messages[1],
        "second": old.messages[2],
        "member": world.member.id,
        "elsewhere": other.messages[1],
    }
    execute_sql(runtime, tamper, **{k: v for k, v in params.items() if f":{k}" in tamper})
    with runtime.database.transaction() as session:
        before = dict(session.execute(select(Message.id, Message.body_ciphertext)).all())

    result = reseal(runtime, world)

    assert result.refused == [old.id]
    assert (version_of(runtime, old.id), version_of(runtime, other.id)) == (1, 2)
    (entry,) = audit_of(runtime, "content.reseal_refused")
    assert json.loads(entry.details) == {"reason": reason}
    with runtime.database.transaction() as session:  # nothing of it was rewritten
        for message_id, body in session.execute(
            select(Message.id, Message.body_ciphertext).where(Message.conversation_id == old.id)
        ):
            assert body == before[message_id]


def test_sealed_archive_records_are_left_as_the_ledger_hashed_them(runtime, world):
    archived, live = legacy(runtime, world), legacy(runtime, world)
    with runtime.database.transaction() as session:
        DeletionService(session, runtime).delete_own(world.member, archived.id)
        bodies = list(
            session.scalars(
                select(Message.body_ciphertext).where(Message.conversation_id == archived.id)
            )
        )

    result = reseal(runtime, world)

    assert (result.resealed, result.remaining) == (1, 0)
    assert (version_of(runtime, archived.id), version_of(runtime, live.id)) == (1, 2)
    with runtime.database.transaction() as session:
        assert bodies == list(
            session.scalars(
                select(Message.body_ciphertext).where(Message.conversation_id == archived.id)
            )
        )


def test_only_a_clinician_holding_the_physician_key_reseals(runtime, world):
    outsider = sign_in(runtime, make_staff(runtime, Role.CLINICIAN)).principal
    for actor in (world.member, outsider):
        with pytest.raises(RoleKeyRequired):
            ContentResealer(runtime, actor)


def test_a_read_racing_the_reseal_is_told_to_try_again_not_an_integrity_failure(runtime, world):
    """PostgreSQL: the reader verified format 1, the re-seal commits, the reader's page query
    then sees format-2 rows (SQLite serialises every unit of work, so there is no race)."""
    if not runtime.database.is_postgresql:
        pytest.skip("SQLite runs one unit of work at a time (BEGIN IMMEDIATE)")
    old = legacy(runtime, world)
    with runtime.database.transaction() as session:
        service = ConversationService(session, runtime)
        conversation, dek = service.open(world.member, old.id)
        reseal(runtime, world)
        with pytest.raises(ContentResealed):
            service.message_page(conversation, dek, limit=10)
    with runtime.database.transaction() as session:  # no false integrity alarm
        assert [e for e in session.scalars(select(AuditEntry)) if "integrity" in e.action] == []
    assert read(runtime, world.member, old.id) == EXPECTED
