"""Role-key rotation (SECURITY-MODEL key hierarchy 4, 8, 9, 11): real database, real crypto.

What a rotation leaves behind is read back with freshly signed-in keyrings: every current
holder opens every conversation, a revoked holder opens none (not with a new sign-in, and not
with a copy of the old role key either), nobody without a grant opens any, and the archive key
rotates the same way. ``medchat keys status`` is read too: a revocation makes a rotation due,
the rotation clears it, and a rotation half-way shows its wraps and holders per version.

A run that stops and resumes (a crash, a pin missing, a wrap that does not open) is in
test_rotation_resume.py; a rotation meeting the conversations and messages written while it
runs, in test_rotation_concurrency.py. Its steps one by one: test_rotation_steps.py; what it
reports and records: test_rotation_record.py.
"""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

from access_control.roles import Role
from medchat.errors import NotFound, RoleKeyRequired
from medchat.keys.status import key_status
from medchat.models import ConversationKeyWrap, Holder, KeyRole, RoleKeyGrant
from medchat.services.accounts import AccountService
from tests.support.accounts import make_staff
from tests.support.conversations import read_bodies, start_conversation
from tests.support.rotation import (
    audit_details,
    grant,
    open_as,
    physician_keys,
    readable_by,
    revoke,
    rotate,
    rotation_world,
    statuses,
    wraps_sealed_to,
)
from tests.support.sessions import sign_in
from tests.support.wraps import assert_only_the_three_holders


@pytest.fixture
def world(runtime):
    return rotation_world(runtime, conversations=12, members=3)


def test_a_rotation_leaves_every_conversation_to_the_current_holders_and_none_to_a_revoked_one(
    runtime, world
):
    leaver = make_staff(runtime, Role.CLINICIAN)
    grant(runtime, world.clinician, leaver)
    copied_keyring = sign_in(runtime, leaver).principal.keyring  # what the leaver kept
    assert readable_by(runtime, copied_keyring, world.deks) == 12
    assert revoke(runtime, world.clinician, leaver) == ["physician"]

    result = rotate(runtime, world.clinician, batch_size=5)

    # v2 is the successor the revocation made (``medchat.keys.successors``): the rotation
    # makes its own key and retires both.
    assert (result.from_version, result.to_version) == (1, 3)
    assert (result.resealed, result.retired) == (12, True)
    assert result.grants == 2  # the starter, then the colleague; never the leaver
    assert statuses(runtime) == {1: "retired", 2: "retired", 3: "active"}
    for holder in (world.clinician, world.colleague):
        keyring = sign_in(runtime, holder).principal.keyring
        assert [k.role_key_id for k in keyring.role_keys(KeyRole.PHYSICIAN)] == [
            physician_keys(runtime)[3].id
        ]
        assert readable_by(runtime, keyring, world.deks) == 12
    # The leaver: no grant left, and the old role key they copied names no wrap any more.
    assert not sign_in(runtime, leaver).principal.keyring.holds_role(KeyRole.PHYSICIAN)
    assert readable_by(runtime, copied_keyring, world.deks) == 0
    old = physician_keys(runtime)[1]
    assert wraps_sealed_to(runtime, old) == 0
    with runtime.database.transaction() as session:
        assert not session.scalar(
            select(func.count()).select_from(RoleKeyGrant).where(RoleKeyGrant.role_key_id == old.id)
        )
        leftovers = session.scalars(select(ConversationKeyWrap.wrap)).all()
    assert all(old.key_id not in wrap[:11] for wrap in leftovers)
    batches = audit_details(runtime, "role_key.rewrap_batch")
    assert [b["resealed"] for b in batches] == [5, 5, 2]
    for action in ("role_key.rotation_start", "role_key.activate", "role_key.retire"):
        assert len(audit_details(runtime, action)) == 1


def test_the_archive_wraps_and_the_member_wraps_are_left_alone(runtime, world):
    with runtime.database.transaction() as session:
        before = set(
            session.scalars(
                select(ConversationKeyWrap.wrap).where(
                    ConversationKeyWrap.holder != Holder.PHYSICIAN
                )
            )
        )
    rotate(runtime, world.clinician)
    with runtime.database.transaction() as session:
        after = set(
            session.scalars(
                select(ConversationKeyWrap.wrap).where(
                    ConversationKeyWrap.holder != Holder.PHYSICIAN
                )
            )
        )
    assert before == after and len(after) == 24


def test_a_session_opened_before_the_rotation_keeps_reading(runtime, world):
    before = sign_in(runtime, world.colleague).principal
    rotate(runtime, world.clinician)

    assert readable_by(runtime, before.keyring, world.deks) == 12
    member = sign_in(runtime, world.members[0]).principal
    started = start_conversation(runtime, member, subject=None, bodies=["after the rotation"])
    assert read_bodies(runtime, before, started.id) == ["after the rotation"]


def test_a_revoked_holder_is_not_handed_the_new_key(runtime, world):
    """The grant step seals the new key only to accounts that still hold the old one."""
    rotate(runtime, world.clinician, prepare_only=True)
    revoke(runtime, world.clinician, world.colleague)
    grant(runtime, world.clinician, world.colleague)  # re-granted by a session holding v1 and v2
    revoke(runtime, world.clinician, world.colleague)

    rotate(runtime, world.clinician)

    with pytest.raises(RoleKeyRequired):
        read_bodies(runtime, sign_in(runtime, world.colleague).principal, next(iter(world.deks)))
    with runtime.database.transaction() as session:
        holders = session.scalars(select(RoleKeyGrant.account_id)).all()
    assert world.colleague.id not in holders


def test_a_conversation_opens_for_nobody_without_a_grant(runtime, world):
    rotate(runtime, world.clinician)
    outsider = make_staff(runtime, Role.CLINICIAN)
    keyring = sign_in(runtime, outsider).principal.keyring
    with pytest.raises(NotFound):
        open_as(runtime, keyring, next(iter(world.deks)))


def test_a_clinician_without_the_key_cannot_rotate(runtime, world):
    outsider = make_staff(runtime, Role.CLINICIAN)
    with pytest.raises(RoleKeyRequired):
        rotate(runtime, outsider)
    with pytest.raises(RoleKeyRequired):
        rotate(runtime, world.compliance)  # holds the archive key, not the physician key
    assert statuses(runtime) == {1: "active"}


def test_the_archive_key_rotates_the_same_way(runtime, world):
    result = rotate(runtime, world.compliance, KeyRole.ARCHIVE, batch_size=5)

    assert (result.resealed, result.retired) == (12, True)
    # Live conversations: each archive wrap is gated again and, through its gate, opens with
    # the new archive key to the conversation's DEK (``docs/archive.md``; sealed records are
    # opened by a retrieval in ``tests/security/test_archive_gate.py``).
    archive = sign_in(runtime, world.compliance).principal.keyring
    physician = sign_in(runtime, world.clinician).principal.keyring
    counted: Counter[str] = Counter()
    for person in world.members:
        member = sign_in(runtime, person).principal.keyring
        counted += assert_only_the_three_holders(
            runtime, person.id, physician=physician, archive=archive, member=member
        )
    assert counted == {"archive": 12, "physician": 12, "member": 12}
    assert statuses(runtime) == {1: "active"}  # the physician key did not move


# What ``medchat keys status`` tells an operator: a rotation due, and one half-way.
def _status(runtime):
    with runtime.database.transaction() as session:
        return key_status(session, runtime.custody(session))


def test_revoking_and_disabling_make_a_rotation_due_and_a_rotation_clears_it(runtime, world):
    assert _status(runtime).due() == []
    assert revoke(runtime, world.clinician, world.colleague) == ["physician"]
    assert revoke(runtime, world.clinician, world.colleague) == []  # nothing left to revoke
    due = _status(runtime).due()
    assert [(v.role, v.version, v.rotation_due_reason) for v in due] == [
        ("physician", 1, "grant_revoked")
    ]
    grant(runtime, world.clinician, world.colleague)
    with runtime.database.transaction() as session:
        assert AccountService(session, runtime).disable(world.colleague.id) == ["physician"]
        assert AccountService(session, runtime).disable(world.members[0].id) == []
    assert _status(runtime).due()[0].rotation_due_reason == "grant_revoked"  # the first reason

    rotate(runtime, world.clinician)

    assert _status(runtime).due() == []


def test_a_revocation_during_a_rotation_leaves_the_new_key_due(runtime, world):
    rotate(runtime, world.clinician, prepare_only=True)  # the colleague holds v2 already
    revoke(runtime, world.clinician, world.colleague)

    rotate(runtime, world.clinician)

    assert [(v.version, v.status) for v in _status(runtime).due()] == [(2, "active")]


def test_keys_status_counts_wraps_and_holders_per_version(runtime, world):
    rotate(runtime, world.clinician, batch_size=5, max_batches=1)

    status = _status(runtime)

    physician = {v.version: v for v in status.versions if v.role == "physician"}
    assert (physician[1].status, physician[1].wraps, physician[1].holders) == ("retiring", 7, 2)
    assert (physician[2].status, physician[2].wraps, physician[2].holders) == ("active", 5, 2)
    assert physician[1].pinned and physician[2].pinned
    archive = [v for v in status.versions if v.role == "archive"]
    assert [(v.wraps, v.holders) for v in archive] == [(12, 1)]
    [progress] = status.rotations
    assert (progress.from_version, progress.to_version) == (1, 2)
    assert (progress.resealed, progress.remaining) == (5, 7)
    assert progress.activated_at is not None
