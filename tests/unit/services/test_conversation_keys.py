"""Opening a conversation's keys with what a session holds, rule by rule.

A doctor's session opened before a rotation holds only the old physician key; the rotation
re-seals every wrap to the new one. ``ConversationKeys.open_key`` then opens the doctor's
current grants with the session's personal key (what signing in again would do), once per
conversation, for every epoch. Without a personal key there is nothing more to try. The
attacks (junk wraps, swapped commitments) are in tests/security.
"""

from __future__ import annotations

import pytest

from access_control.keyring import Keyring
from medchat.errors import NotFound
from medchat.models import Conversation, Holder
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
