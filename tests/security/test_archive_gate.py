"""The archive key opens only sealed records (SECURITY-MODEL key hierarchy 10; issue 11,
finding 5).

A compliance officer holds the archive role key, and every conversation's DEK is wrapped to it
from the start (sealing must work unattended). These tests take the officer's side with a copy
of the database and their own password (``tests.support.officer_copy``: no request, no
second officer, no audit) and check that it opens no live conversation, and exactly the
records that were sealed, by each path that seals (a member's deletion, account deletion,
retention's seal mode), across an archive-key rotation and after migration 0011 gated the
wraps an older version left plain. What a database writer does to a gate is refused loudly.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from alembic import command
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select

from access_control.key_directory import ServerKeys
from medchat.archive.gate import GATED
from medchat.errors import ArchiveGated
from medchat.identity.principal import Principal
from medchat.keys.status import key_status
from medchat.models import ArchiveRecord, AuditEntry, ConversationKeyWrap, KeyRole
from medchat.services.account_deletion import AccountDeletionService
from medchat.services.archive_reading import ArchivedConversation
from medchat.services.context import ServiceContext
from medchat.services.retrieval import RetrievalService
from medchat.storage.migrate import alembic_config
from tests.support.accounts import Person, make_member
from tests.support.archive import archive_colleague, flip_byte, seal
from tests.support.conversations import StartedConversation, read_bodies, start_conversation
from tests.support.messaging import CareTeam, care_team
from tests.support.officer_copy import archive_keys_from_copy, conversations_opened_from_copy
from tests.support.retention import run
from tests.support.rotation import rotate
from tests.support.sessions import attached, sign_in
from tests.support.tampering import execute_sql

JUSTIFICATION = "Court order 2027/31 about these exchanges with the member."
REVISION = "0011"


@dataclass
class Desk:
    """The first holders, a second officer holding the archive key, a member and three live
    conversations (subject ``Subject n``, one question ``Question n``)."""

    team: CareTeam
    colleague: Person
    person: Person
    member: Principal
    live: list[StartedConversation]

    def deks(self, *conversations: StartedConversation) -> dict[uuid.UUID, bytes]:
        return {c.id: c.dek for c in conversations}


@pytest.fixture
def desk(runtime: ServiceContext) -> Desk:
    team = care_team(runtime)
    colleague = archive_colleague(runtime, team.compliance)
    person = make_member(runtime)
    member = sign_in(runtime, person).principal
    live = [
        start_conversation(runtime, member, subject=f"Subject {n}", bodies=[f"Question {n}"])
        for n in range(3)
    ]
    return Desk(team, colleague, person, member, live)


def opened_by_officer(runtime: ServiceContext, officer: Person) -> dict[uuid.UUID, bytes]:
    keys = archive_keys_from_copy(runtime, officer)
    assert keys, "the officer's password opens their archive key: the attack is real"
    return conversations_opened_from_copy(runtime, keys)


def archive_wraps(runtime: ServiceContext, conversation_id: uuid.UUID) -> list[tuple[str, bytes]]:
    """(holder, key id) of the conversation's archive wraps, gated or not."""
    with runtime.database.transaction() as session:
        rows = session.execute(
            select(ConversationKeyWrap.holder, ConversationKeyWrap.recipient_key_id).where(
                ConversationKeyWrap.conversation_id == conversation_id,
                ConversationKeyWrap.holder.in_(["archive", GATED]),
            )
        ).all()
    return [(holder, key_id) for holder, key_id in rows]


def archive_key_id(runtime: ServiceContext) -> bytes:
    with runtime.database.transaction() as session:
        return runtime.custody(session).active_role_key(KeyRole.ARCHIVE).key_id


def retrieve(
    runtime: ServiceContext, desk: Desk, conversation_id: uuid.UUID
) -> ArchivedConversation:
    """Four eyes, through the service: the first officer asks, the colleague approves, the
    first officer opens (each signed in now)."""
    asker = sign_in(runtime, desk.team.compliance).principal
    approver = sign_in(runtime, desk.colleague).principal
    with runtime.database.transaction() as session:
        record_id = session.scalars(
            select(ArchiveRecord.id).where(ArchiveRecord.conversation_id == conversation_id)
        ).one()
        retrieval = RetrievalService(session, runtime).request(asker, record_id, JUSTIFICATION)
    with runtime.database.transaction() as session:
        RetrievalService(session, runtime).approve(approver, retrieval.id)
    with runtime.database.transaction() as session:
        return RetrievalService(session, runtime).content(asker, retrieval.id)


def refusals(runtime: ServiceContext, action: str) -> list[dict[str, Any]]:
    """The details of the audit entries that refused ``action`` (or record its failure)."""
    with runtime.database.transaction() as session:
        return [
            json.loads(e.details)
            for e in session.scalars(select(AuditEntry).where(AuditEntry.action == action))
            if e.outcome in ("denied", "failed")
        ]


# -- finding 5: the officer's password and a database copy -----------------------------------


def test_an_officers_password_and_a_database_copy_open_no_live_conversation(runtime, desk):
    for officer in (desk.team.compliance, desk.colleague):
        assert opened_by_officer(runtime, officer) == {}
    key_id = archive_key_id(runtime)
    for n, started in enumerate(desk.live):
        assert archive_wraps(runtime, started.id) == [(GATED, key_id)]
        assert read_bodies(runtime, desk.member, started.id) == [f"Question {n}"]


def test_a_members_deletion_opens_that_record_to_the_officer_and_to_a_retrieval(runtime, desk):
    first = desk.live[0]
    seal(runtime, desk.member, first.id)

    assert archive_wraps(runtime, first.id) == [("archive", archive_key_id(runtime))]
    # Offline, through the unwrap the retrieval uses: the sealed record only.
    assert opened_by_officer(runtime, desk.team.compliance) == desk.deks(first)
    opened = retrieve(runtime, desk, first.id)
    assert (opened.subject, [m.body for m in opened.messages]) == ("Subject 0", ["Question 0"])


def test_erasing_the_account_seals_and_opens_every_conversation_of_it(runtime, desk):
    assert opened_by_officer(runtime, desk.team.compliance) == {}
    with runtime.database.transaction() as session:
        member = attached(sign_in(runtime, desk.person).principal, session)
        AccountDeletionService(session, runtime).delete_own(
            member, desk.person.password, address="198.51.100.1"
        )

    assert opened_by_officer(runtime, desk.team.compliance) == desk.deks(*desk.live)
    assert retrieve(runtime, desk, desk.live[2].id).subject == "Subject 2"


def test_retention_seal_mode_makes_records_that_open_through_an_approved_retrieval(
    runtime, clock, desk
):
    assert opened_by_officer(runtime, desk.team.compliance) == {}  # live: gated
    result = run(runtime, clock.now() + timedelta(days=730, seconds=1), seal_expired=True)

    assert result.conversations_sealed == 3
    for n, started in enumerate(desk.live):
        assert [holder for holder, _ in archive_wraps(runtime, started.id)] == ["archive"]
        opened = retrieve(runtime, desk, started.id)
        assert (opened.subject, [m.body for m in opened.messages]) == (
            f"Subject {n}",
            [f"Question {n}"],
        )
    assert opened_by_officer(runtime, desk.team.compliance) == desk.deks(*desk.live)


def test_an_archive_rotation_keeps_every_record_openable_and_the_live_ones_gated(runtime, desk):
    sealed, *live = desk.live
    seal(runtime, desk.member, sealed.id)
    old_key_id = archive_key_id(runtime)

    result = rotate(runtime, desk.team.compliance, KeyRole.ARCHIVE, batch_size=2)

    assert (result.resealed, result.retired) == (3, True)
    new_key_id = archive_key_id(runtime)
    assert new_key_id != old_key_id
    clinician = sign_in(runtime, desk.team.clinician).principal
    for n, started in enumerate(live, 1):
        assert archive_wraps(runtime, started.id) == [(GATED, new_key_id)]
        assert read_bodies(runtime, clinician, started.id) == [f"Question {n}"]
    assert archive_wraps(runtime, sealed.id) == [("archive", new_key_id)]
    assert retrieve(runtime, desk, sealed.id).subject == "Subject 0"
    # The new key, in the copy of either officer, still opens the sealed record only.
    for officer in (desk.team.compliance, desk.colleague):
        assert opened_by_officer(runtime, officer) == desk.deks(sealed)
    with runtime.database.transaction() as session:
        versions = key_status(session, runtime.custody(session)).versions
    assert [(v.version, v.wraps) for v in versions if v.role == "archive"] == [(1, 0), (2, 3)]


# -- migration 0011 ---------------------------------------------------------------------------


def run_revision(runtime: ServiceContext, keys: ServerKeys | None, *, down: bool = False) -> None:
    """Run migration 0011 alone (up, or up then down) over this database, as ``medchat db
    upgrade`` would with ``keys``; the database's own revision is put back afterwards."""
    config = alembic_config(runtime.settings.database_url, keys)
    previous = ScriptDirectory.from_config(config).get_revision(REVISION).down_revision
    with runtime.database.engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    command.stamp(config, previous)  # type: ignore[arg-type]
    try:
        command.upgrade(config, REVISION)
        if down:
            command.downgrade(config, previous)  # type: ignore[arg-type]
    finally:
        command.stamp(config, current)  # type: ignore[arg-type]


def leave_plain_as_before_0011(runtime: ServiceContext, conversation_id: uuid.UUID) -> None:
    """Store the conversation's archive wrap as versions before 0011 did: ungated."""
    with runtime.database.transaction() as session:
        row = session.scalars(
            select(ConversationKeyWrap).where(
                ConversationKeyWrap.conversation_id == conversation_id,
                ConversationKeyWrap.holder == GATED,
            )
        ).one()
        row.wrap = runtime.archive_gate.open(
            row.wrap, conversation_id=conversation_id, recipient_key_id=row.recipient_key_id
        )
        row.holder = "archive"


def test_the_migration_gates_the_plain_archive_wraps_of_live_conversations(runtime, desk):
    sealed, *live = desk.live
    seal(runtime, desk.member, sealed.id)
    for started in live:
        leave_plain_as_before_0011(runtime, started.id)
    officer = desk.team.compliance
    assert opened_by_officer(runtime, officer) == desk.deks(*desk.live)  # finding 5, as it was

    with pytest.raises(RuntimeError, match="gates the archive wraps of live conversations"):
        run_revision(runtime, None)  # existing rows need the server keys
    run_revision(runtime, runtime.keys)

    assert opened_by_officer(runtime, officer) == desk.deks(sealed)
    key_id = archive_key_id(runtime)
    for n, started in enumerate(live, 1):
        assert archive_wraps(runtime, started.id) == [(GATED, key_id)]
        assert read_bodies(runtime, desk.member, started.id) == [f"Question {n}"]
    assert retrieve(runtime, desk, sealed.id).subject == "Subject 0"
    with runtime.database.transaction() as session:
        before = sorted(session.scalars(select(ConversationKeyWrap.wrap)))
    run_revision(runtime, None)  # idempotent: nothing is left to gate, so no key is needed
    with runtime.database.transaction() as session:
        assert sorted(session.scalars(select(ConversationKeyWrap.wrap))) == before
    # Its downgrade lifts the gates again (what the code before 0011 reads).
    run_revision(runtime, runtime.keys, down=True)
    assert opened_by_officer(runtime, officer) == desk.deks(*desk.live)


# -- a database writer and the gate ------------------------------------------------------------


def gated_row(runtime: ServiceContext, conversation_id: uuid.UUID) -> ConversationKeyWrap:
    with runtime.database.transaction() as session:
        row = session.scalars(
            select(ConversationKeyWrap).where(
                ConversationKeyWrap.conversation_id == conversation_id,
                ConversationKeyWrap.holder == GATED,
            )
        ).one()
        session.expunge(row)
    return row


def refused_retrieval(runtime: ServiceContext, desk: Desk, conversation_id: uuid.UUID) -> None:
    with pytest.raises(ArchiveGated):
        retrieve(runtime, desk, conversation_id)
    assert refusals(runtime, "archive.retrieval.open")[-1]["refused"] == "gated"


def test_a_gate_altered_through_sql_does_not_stop_the_sealing_and_is_refused_at_retrieval(
    runtime, desk
):
    first = desk.live[0]
    flip_byte(runtime, "conversation_key_wraps", "wrap", gated_row(runtime, first.id).id)

    seal(runtime, desk.member, first.id)  # the member's request is honoured

    assert [holder for holder, _ in archive_wraps(runtime, first.id)] == [GATED]  # evidence
    assert refusals(runtime, "archive.gate_failed") == [{"lifted": 0, "refused": 1}]
    refused_retrieval(runtime, desk, first.id)


def test_a_sealed_records_wrap_gated_again_through_sql_is_refused_loudly(runtime, desk):
    """A writer puts back the gated row a backup held: the record opens nothing (409)."""
    first = desk.live[0]
    old = gated_row(runtime, first.id)
    seal(runtime, desk.member, first.id)
    execute_sql(
        runtime,
        "UPDATE conversation_key_wraps SET holder = :holder, wrap = :wrap"
        " WHERE conversation_id = :conversation_id",
        holder=GATED,
        wrap=old.wrap,
        conversation_id=first.id,
    )
    refused_retrieval(runtime, desk, first.id)
