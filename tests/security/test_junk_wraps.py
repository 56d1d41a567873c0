"""One junk row never costs a conversation across a role-key rotation (issue 18, item 3).

A rotation re-seals each DEK wrap from the old role key to the new one. It used to take any
wrap already naming the new key as the conversation's successor and delete the old wrap, the
last that opened it, without opening that successor. A database writer plants such rows
through SQL (the new key's id and public key are not secret) before or during the rotation;
these tests run the rotation to its end and check that every conversation still opens, to
the clinician, and, sealed ones, through an approved four-eyes retrieval (for a sealed record,
whose archive wrap is the only way back, a loss would be permanent).

The junk takes each form a writer can make without the server's keys: random bytes, and an
HPKE wrap to the new public key with the right recipient, conversation and purpose that
opens, to a DEK of the writer's choosing (the key commitment refuses it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from access_control import crypto, hybrid_kem
from medchat.archive.gate import GATED
from medchat.identity.principal import Principal
from medchat.keys.wrap_binding import wrap_purpose
from medchat.models import ConversationKeyWrap, KeyRole, RoleKey
from medchat.services.context import ServiceContext
from tests.support.accounts import Person, make_member
from tests.support.archive import archive_colleague, retrieve, seal
from tests.support.conversations import StartedConversation, read_bodies, start_conversation
from tests.support.messaging import CareTeam, care_team
from tests.support.rotation import audit_details, rotate
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql

INSERT_WRAP = (
    "INSERT INTO conversation_key_wraps (id, conversation_id, holder, recipient_key_id, wrap,"
    " created_at) VALUES (:id, :conversation_id, :holder, :recipient_key_id, :wrap, :created_at)"
)


@dataclass
class Clinic:
    """Both first holders, a second officer (approver, holds the archive key), a member and
    four conversations: ``Question n`` each, the first one sealed (its physician wrap went
    with the sealing, its archive wrap is plain)."""

    team: CareTeam
    approver: Person
    member: Principal
    conversations: list[StartedConversation]

    @property
    def sealed(self) -> StartedConversation:
        return self.conversations[0]


@pytest.fixture
def clinic(runtime: ServiceContext) -> Clinic:
    team = care_team(runtime)
    approver = archive_colleague(runtime, team.compliance)
    member = sign_in(runtime, make_member(runtime)).principal
    conversations = [
        start_conversation(runtime, member, subject=f"Subject {n}", bodies=[f"Question {n}"])
        for n in range(4)
    ]
    seal(runtime, member, conversations[0].id)
    return Clinic(team, approver, member, conversations)


def role_key(runtime: ServiceContext, role: KeyRole, version: int) -> RoleKey:
    with runtime.database.transaction() as session:
        row = session.scalars(
            select(RoleKey).where(RoleKey.role == role, RoleKey.version == version)
        ).one()
        session.expunge(row)
    return row


def still_on(runtime: ServiceContext, key: RoleKey) -> dict[uuid.UUID, str]:
    """Conversation -> stored holder of its wrap still naming ``key``."""
    with runtime.database.transaction() as session:
        rows = session.execute(
            select(ConversationKeyWrap.conversation_id, ConversationKeyWrap.holder).where(
                ConversationKeyWrap.recipient_key_id == key.key_id
            )
        ).all()
    return {conversation_id: holder for conversation_id, holder in rows}


def plant_junk(
    runtime: ServiceContext, key: RoleKey, conversation_id: uuid.UUID, holder: str, *, opens: bool
) -> None:
    """A row naming ``key``, written as a database writer would: an HPKE wrap of a DEK of the
    writer's choosing (``opens``), or random bytes of a wrap's length."""
    if opens:
        wrap = hybrid_kem.wrap_key(
            key.public_key,
            crypto.generate_key(),
            recipient_id=key.id,
            context_id=conversation_id,
            purpose=wrap_purpose("archive" if holder == GATED else holder),
        )
    else:
        wrap = (crypto.generate_key() * (hybrid_kem.WRAP_SIZE // 32 + 1))[: hybrid_kem.WRAP_SIZE]
    execute_sql(
        runtime,
        INSERT_WRAP,
        id=uuid.uuid4(),
        conversation_id=conversation_id,
        holder=holder,
        recipient_key_id=key.key_id,
        wrap=wrap,
        created_at=runtime.clock.now(),
    )


def wraps_per_conversation(runtime: ServiceContext, key: RoleKey) -> dict[uuid.UUID, int]:
    with runtime.database.transaction() as session:
        rows = session.execute(
            select(ConversationKeyWrap.conversation_id, func.count())
            .where(ConversationKeyWrap.recipient_key_id == key.key_id)
            .group_by(ConversationKeyWrap.conversation_id)
        ).all()
    return {conversation_id: count for conversation_id, count in rows}


def assert_everything_opens(runtime: ServiceContext, clinic: Clinic) -> None:
    clinician = sign_in(runtime, clinic.team.clinician).principal
    for n, started in enumerate(clinic.conversations):
        if started is clinic.sealed:
            opened = retrieve(runtime, clinic.team.compliance, clinic.approver, started.id)
            assert [m.body for m in opened.messages] == [f"Question {n}"]
        else:
            assert read_bodies(runtime, clinician, started.id) == [f"Question {n}"]


def test_junk_physician_wraps_planted_during_a_rotation_cost_no_conversation(runtime, clinic):
    old = role_key(runtime, KeyRole.PHYSICIAN, 1)
    # One batch of one conversation at a time, until one wrap is re-sealed (the sealed
    # conversation has no physician wrap left).
    while not rotate(runtime, clinic.team.clinician, batch_size=1, max_batches=1).resealed:
        pass
    new = role_key(runtime, KeyRole.PHYSICIAN, 2)
    waiting = sorted(still_on(runtime, old))
    assert len(waiting) == 2
    for n, conversation_id in enumerate(waiting):
        plant_junk(runtime, new, conversation_id, "physician", opens=n % 2 == 0)

    result = rotate(runtime, clinic.team.clinician, batch_size=2)

    assert result.retired
    assert_everything_opens(runtime, clinic)
    # Each junk row was replaced, not kept beside the good wrap: one wrap per conversation.
    live = clinic.conversations[1:]
    assert wraps_per_conversation(runtime, new) == {c.id: 1 for c in live}
    replaced = [
        c
        for d in audit_details(runtime, "role_key.rewrap_batch")
        for c in d.get("unproven_replaced", [])
    ]
    assert sorted(replaced) == sorted(str(c) for c in waiting)


def test_junk_archive_wraps_planted_before_activation_cost_no_record(runtime, clinic):
    """Gated (live) and plain (sealed) archive wraps; a live one sealed after the rotation
    must still open through a retrieval, so its gated successor was a good one."""
    rotate(runtime, clinic.team.compliance, KeyRole.ARCHIVE, prepare_only=True)
    new = role_key(runtime, KeyRole.ARCHIVE, 2)
    assert set(still_on(runtime, role_key(runtime, KeyRole.ARCHIVE, 1)).values()) == {
        GATED,
        "archive",
    }
    live = clinic.conversations[1:]
    plant_junk(runtime, new, clinic.sealed.id, "archive", opens=True)
    plant_junk(runtime, new, live[0].id, GATED, opens=False)
    plant_junk(runtime, new, live[1].id, "archive", opens=True)  # a plain one, on a live one

    result = rotate(runtime, clinic.team.compliance, KeyRole.ARCHIVE, batch_size=3)

    assert result.retired
    assert_everything_opens(runtime, clinic)
    assert still_on(runtime, new) == {
        clinic.sealed.id: "archive",
        **{started.id: GATED for started in live},
    }
    for n, started in enumerate(live[:2], 1):
        seal(runtime, clinic.member, started.id)
        opened = retrieve(runtime, clinic.team.compliance, clinic.approver, started.id)
        assert [m.body for m in opened.messages] == [f"Question {n}"]


def test_a_successor_that_opens_is_kept_and_only_the_old_wrap_goes(runtime, clinic):
    """A good new-key wrap found in place (sealed with the true DEK) is proven and kept."""
    rotate(runtime, clinic.team.clinician, prepare_only=True)
    new = role_key(runtime, KeyRole.PHYSICIAN, 2)
    started = clinic.conversations[2]
    good = uuid.uuid4()
    execute_sql(
        runtime,
        INSERT_WRAP,
        id=good,
        conversation_id=started.id,
        holder="physician",
        recipient_key_id=new.key_id,
        wrap=hybrid_kem.wrap_key(
            new.public_key,
            started.dek,
            recipient_id=new.id,
            context_id=started.id,
            purpose=wrap_purpose("physician"),
        ),
        created_at=runtime.clock.now(),
    )

    result = rotate(runtime, clinic.team.clinician)

    assert result.retired and result.resealed == 2  # of three live: one was in place already
    with runtime.database.transaction() as session:
        kept = session.scalars(
            select(ConversationKeyWrap.id).where(
                ConversationKeyWrap.conversation_id == started.id,
                ConversationKeyWrap.holder == "physician",
            )
        ).all()
    assert kept == [good]
    assert_everything_opens(runtime, clinic)
