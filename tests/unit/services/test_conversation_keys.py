"""Opening a conversation's keys with what a session holds, rule by rule.

A doctor's session opened before a rotation holds only the old physician key; the rotation
re-seals every wrap to the new one. ``ConversationKeys.open_key`` then opens the doctor's
current grants with the session's personal key (what signing in again would do), once per
conversation, for every epoch. Without a personal key there is nothing more to try. The
attacks (junk wraps, swapped commitments) are in tests/security.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, select

from access_control import crypto, hybrid_kem
from access_control.keyring import Keyring
from medchat.archive.gate import GATED
from medchat.errors import Conflict, KeyIntegrityFailure, NotFound
from medchat.keys.epochs import ConversationDeks, EpochWraps, holder_wraps
from medchat.models import (
    Conversation,
    ConversationKeyWrap,
    ConversationStatus,
    Holder,
    KeyRole,
)
from tests.support.accounts import make_member
from tests.support.conversations import start_conversation
from tests.support.messaging import care_team
from tests.support.rotation import rotate
from tests.support.sessions import sign_in


@pytest.fixture
def world(runtime):
    """A care team, a member's conversation of two key epochs, a doctor's session from before
    a rotation, and the rotation done (the old physician key retired)."""
    team = care_team(runtime)
    member = sign_in(runtime, make_member(runtime)).principal
    started = start_conversation(runtime, member, subject="knee", bodies=["it hurts"])
    with runtime.database.transaction() as session:
        conversation = session.get(Conversation, started.id)
        keys = runtime.conversation_keys(session)
        deks = keys.open_key(conversation, member.keyring, Holder.MEMBER)
        keys.start_epoch(conversation, deks, runtime.clock.now())
        second = deks.of(2)
    before = sign_in(runtime, team.clinician).principal.keyring
    rotate(runtime, team.clinician)
    return started.id, {1: started.dek, 2: second}, before


def open_as(runtime, conversation_id, keyring, holder=Holder.PHYSICIAN):
    with runtime.database.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        deks = runtime.conversation_keys(session).open_key(conversation, keyring, holder)
        return deks.conversation_id, {epoch: deks.of(epoch) for epoch in (1, 2)}


def test_a_session_from_before_a_rotation_opens_every_epoch_with_its_personal_key(runtime, world):
    conversation_id, deks, before = world
    assert open_as(runtime, conversation_id, before) == (conversation_id, deks)


def test_without_a_personal_key_the_old_role_key_opens_nothing_after_the_rotation(runtime, world):
    conversation_id, _, before = world
    old_key_only = Keyring(before.account_id, roles=before.roles)
    old_key_only.memo_key = before.memo_key
    old_key_only.session_id = before.session_id
    with pytest.raises(NotFound) as refused:
        open_as(runtime, conversation_id, old_key_only)
    assert refused.value.message == "No key this session holds opens this conversation."


def test_a_member_is_never_given_a_role_holders_fresher_keys(runtime, world):
    conversation_id, _, before = world
    # The doctor's session asking as the member holder: only member wraps count, and the
    # doctor's personal key opens none of them (no grant makes a member of anyone).
    with pytest.raises(NotFound):
        open_as(runtime, conversation_id, before, Holder.MEMBER)


def test_only_the_three_holders_open_a_conversation_key(runtime, world):
    conversation_id, _, before = world
    with pytest.raises(ValueError) as refused:
        open_as(runtime, conversation_id, before, "nurse")
    assert str(refused.value) == "no holder 'nurse' opens a conversation key"


# -- beginning epochs and adding wraps ---------------------------------------------------------


@pytest.fixture
def fresh(runtime):
    """A care team and a member, keys initialised, no conversation yet."""
    care_team(runtime)
    return sign_in(runtime, make_member(runtime)).principal


def new_conversation(session, member_id) -> Conversation:
    now = datetime.now(UTC)
    conversation = Conversation(
        id=uuid.uuid4(),
        member_id=member_id,
        status=ConversationStatus.OPEN,
        message_count=0,
        created_at=now,
        last_message_at=now,
        status_since=now,
    )
    session.add(conversation)
    return conversation


def keyed(runtime, session, member_id):
    """A new conversation of ``member_id`` with its epoch 1 key, written (flushed)."""
    conversation = new_conversation(session, member_id)
    keys = runtime.conversation_keys(session)
    with session.no_autoflush:
        deks = keys.new_key(conversation, runtime.clock.now())
    session.flush()
    return conversation, keys, deks


def test_a_new_key_is_epoch_one_of_its_conversation_with_its_row(runtime, fresh):
    with runtime.database.transaction() as session:
        conversation = new_conversation(session, fresh.id)
        with session.no_autoflush:
            deks = runtime.conversation_keys(session).new_key(conversation, runtime.clock.now())
        assert deks.conversation_id == conversation.id
        assert (deks.current, deks.begun) == (1, 1)
        assert deks.rows[1].epoch == 1
        crypto.verify_key_commitment(deks.of(1), conversation.key_commitment, conversation.id)
        session.flush()
        wraps = session.scalars(
            select(ConversationKeyWrap).where(
                ConversationKeyWrap.conversation_id == conversation.id
            )
        ).all()
        # Live, so the archive wrap is gated; every wrap is epoch 1's.
        assert sorted((w.holder, w.epoch) for w in wraps) == [
            (GATED, 1),
            (Holder.MEMBER, 1),
            (Holder.PHYSICIAN, 1),
        ]


def test_a_later_epoch_is_numbered_after_the_last_and_a_stale_reader_is_refused(runtime, fresh):
    with runtime.database.transaction() as session:
        conversation, keys, deks = keyed(runtime, session, fresh.id)
        stale = ConversationDeks(conversation.id, {1: deks.of(1)})
        assert keys.start_epoch(conversation, deks, runtime.clock.now()) == 2
        assert (deks.current, deks.begun, deks.rows[2].epoch) == (2, 2, 2)
        session.flush()
        with pytest.raises(Conflict) as refused:
            keys.start_epoch(conversation, stale, runtime.clock.now())
        assert refused.value.message == (
            "This conversation changed while it was written to; send it again."
        )


def test_an_archive_wrap_is_plain_only_for_a_sealed_conversation(runtime, fresh):
    with runtime.database.transaction() as session:
        conversation, keys, deks = keyed(runtime, session, fresh.id)
        archive = runtime.custody(session).role_keys(KeyRole.ARCHIVE)[0]
        conversation.status = ConversationStatus.SEALED
        session.execute(
            delete(ConversationKeyWrap).where(
                ConversationKeyWrap.conversation_id == conversation.id,
                ConversationKeyWrap.holder == GATED,
            )
        )
        keys.add_wrap(
            conversation,
            deks.of(1),
            Holder.ARCHIVE,
            archive.id,
            archive.public_key,
            archive.key_id,
            runtime.clock.now(),
        )
        session.flush()
        [plain] = session.scalars(
            select(ConversationKeyWrap).where(
                ConversationKeyWrap.conversation_id == conversation.id,
                ConversationKeyWrap.holder.in_([Holder.ARCHIVE, GATED]),
            )
        ).all()
        assert (plain.holder, plain.epoch) == (Holder.ARCHIVE, 1)
        session.rollback()


def test_a_retagged_conversation_verifies_at_its_new_format_only(runtime, fresh):
    with runtime.database.transaction() as session:
        conversation, keys, _ = keyed(runtime, session, fresh.id)
        old_tag, old_version = conversation.key_tag, conversation.content_version
        keys.retag(conversation, old_version - 1)
        assert conversation.content_version == old_version - 1
        assert conversation.key_tag != old_tag
        keys.verify_conversation(conversation)
        conversation.content_version = old_version  # set back without a new tag
        with pytest.raises(KeyIntegrityFailure) as refused:
            keys.verify_conversation(conversation)
        assert refused.value.message == "This conversation's key set was altered."
        session.rollback()


# -- what does not open, and the memo ------------------------------------------------------------


def test_a_wrap_that_opens_to_another_key_is_refused_by_name(runtime, fresh):
    with runtime.database.transaction() as session:
        conversation, keys, _deks = keyed(runtime, session, fresh.id)
        [wrap] = session.scalars(
            select(ConversationKeyWrap.wrap).where(
                ConversationKeyWrap.conversation_id == conversation.id,
                ConversationKeyWrap.holder == Holder.MEMBER,
            )
        ).all()
        with pytest.raises(KeyIntegrityFailure) as refused:
            keys.open_wrap(
                wrap,
                fresh.keyring.personal,
                holder=Holder.MEMBER,
                recipient_id=fresh.id,
                conversation_id=conversation.id,
                commitment=crypto.key_commitment(crypto.generate_key(), conversation.id),
            )
        assert refused.value.message == "This conversation's key does not match its commitment."
        session.rollback()


def wraps_with_an_unknown_one_first(runtime, session, conversation_id, holder):
    """The holder's wraps with one more for epoch 1, first in its epoch, under a key id no
    session holds."""
    read = holder_wraps(session, conversation_id, holder)
    wraps = EpochWraps(current=read.current, rows=read.rows)
    wraps.add(1, b"\x07" * 16, b"not a wrap", read.rows.get(1))
    for epoch, by_key in read.wraps.items():
        for key_id, wrap in by_key.items():
            wraps.add(epoch, key_id, wrap, read.rows.get(epoch))
    return wraps


def test_a_remembered_key_is_recalled_from_whichever_wrap_of_its_epoch_it_came(
    runtime, fresh, monkeypatch
):
    """The memo is asked for every wrap of an epoch, not only the first
    (``_recall__mutmut_12``: ``continue`` made ``break``)."""
    started = start_conversation(runtime, fresh, subject="knee", bodies=["it hurts"])
    keyring = fresh.keyring
    with runtime.database.transaction() as session:
        conversation = session.get(Conversation, started.id)
        keys = runtime.conversation_keys(session)
        assert keys.open_key(conversation, keyring, Holder.MEMBER).of(1) == started.dek
    unwraps = []
    unwrap = hybrid_kem.unwrap_key
    monkeypatch.setattr(
        hybrid_kem, "unwrap_key", lambda *a, **k: unwraps.append(1) or unwrap(*a, **k)
    )
    with runtime.database.transaction() as session:
        conversation = session.get(Conversation, started.id)
        keys = runtime.conversation_keys(session)
        wraps = wraps_with_an_unknown_one_first(runtime, session, started.id, Holder.MEMBER)
        assert next(iter(wraps.wraps[1])) == b"\x07" * 16
        opened = keys.open_key(conversation, keyring, Holder.MEMBER, wraps=wraps)
        assert opened.of(1) == started.dek
    assert unwraps == []  # recalled, not unwrapped again


def test_a_remembered_key_that_does_not_match_its_commitment_is_refused(runtime, fresh):
    started = start_conversation(runtime, fresh, subject="knee", bodies=["it hurts"])
    keyring = fresh.keyring
    with runtime.database.transaction() as session:
        conversation = session.get(Conversation, started.id)
        [wrap] = holder_wraps(session, started.id, Holder.MEMBER).wraps[1].values()
        memo = session.info["unwrap_memo"]
    memo.remember(keyring, started.id, Holder.MEMBER, wrap, crypto.generate_key())
    with runtime.database.transaction() as session, pytest.raises(KeyIntegrityFailure) as refused:
        conversation = session.get(Conversation, started.id)
        runtime.conversation_keys(session).open_key(conversation, keyring, Holder.MEMBER)
    assert refused.value.message == "This conversation's key does not match its commitment."


def test_a_members_session_without_its_personal_key_opens_nothing(runtime, fresh):
    """Not even its own conversation (``_candidates__mutmut_2``: ``or`` made ``and``)."""
    started = start_conversation(runtime, fresh, subject="knee", bodies=["it hurts"])
    with runtime.database.transaction() as session, pytest.raises(NotFound):
        conversation = session.get(Conversation, started.id)
        runtime.conversation_keys(session).open_key(conversation, Keyring(fresh.id), Holder.MEMBER)


def test_a_doctors_session_opens_with_the_role_key_it_holds_alone(runtime):
    """Its held physician key, without its personal key to fall back on
    (``_candidates__mutmut_6``: the holder's role dropped)."""
    team = care_team(runtime)
    member = sign_in(runtime, make_member(runtime)).principal
    started = start_conversation(runtime, member, subject="knee", bodies=["it hurts"])
    doctor = sign_in(runtime, team.clinician).principal.keyring
    roles_only = Keyring(doctor.account_id, roles=doctor.roles)
    with runtime.database.transaction() as session:
        conversation = session.get(Conversation, started.id)
        keys = runtime.conversation_keys(session)
        assert keys.open_key(conversation, roles_only, Holder.PHYSICIAN).of(1) == started.dek
