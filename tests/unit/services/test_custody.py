"""Role keys in custody, rule by rule: making a version, the checks before a key is used or
granted, who holds what, what a loss of access records, and whether a session holds the
current key.

The attacks these rules stop are in tests/security (planted keys, retired keys, a rotation
under load); here each rule of ``medchat.keys.custody`` is pinned on its own. The locks that
order a rotation against sealers and revocations, and the rules that only show at their edges,
are in ``test_custody_locks_and_edges.py``.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from access_control import hybrid_kem
from access_control.keyring import HeldRoleKey, Keyring
from medchat.errors import KeyIntegrityFailure, KeysNotInitialized
from medchat.models import (
    KeyReaderRemoval,
    KeyRole,
    RoleKey,
    RoleKeyGrant,
    RoleKeyStatus,
)
from tests.support.rotation import physician_key, team_with_colleague
from tests.support.sessions import sign_in


@pytest.fixture
def team(runtime):
    """The first physician and archive holders, and a colleague granted the physician key."""
    return team_with_colleague(runtime)


def pinned_pending(runtime, custody):
    """A rotation's new physician key, pinned (what ``keys rotate`` makes before granting it)."""
    key, handle = custody.create_role_key(KeyRole.PHYSICIAN, RoleKeyStatus.PENDING)
    runtime.pins.add(KeyRole.PHYSICIAN, [key.fingerprint])
    return key, handle


# -- making a version --------------------------------------------------------------------------


def test_a_new_version_follows_the_roles_last_and_records_its_public_key(runtime, team):
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        pending, handle = custody.create_role_key(KeyRole.PHYSICIAN, RoleKeyStatus.PENDING)
        archive, _ = custody.create_role_key(KeyRole.ARCHIVE, RoleKeyStatus.ACTIVE)

        assert (pending.role, pending.version, pending.status) == ("physician", 2, "pending")
        assert pending.key_id == handle.key_id
        assert pending.public_key == handle.public_key_bytes
        assert pending.fingerprint == hybrid_kem.public_key_fingerprint(handle.public_key_bytes)
        assert pending.created_at == custody.now
        assert pending.activated_at is None
        assert (archive.version, archive.activated_at) == (2, custody.now)
        assert session.get(RoleKey, pending.id) is pending


def test_the_first_version_of_a_role_is_one(runtime):
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        key, _ = custody.create_role_key(KeyRole.PHYSICIAN, RoleKeyStatus.ACTIVE)
        assert key.version == 1


# -- the checks before a key is used -------------------------------------------------------------


def test_before_keys_init_there_is_no_active_key(runtime):
    with runtime.database.transaction() as session, pytest.raises(KeysNotInitialized):
        runtime.custody(session).active_role_key(KeyRole.PHYSICIAN)


def test_two_active_keys_are_refused_not_chosen_between(runtime, team):
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        assert custody.active_role_key(KeyRole.PHYSICIAN).version == 1
        custody.create_role_key(KeyRole.PHYSICIAN, RoleKeyStatus.ACTIVE)
        with pytest.raises(KeyIntegrityFailure) as refused:
            custody.active_role_key(KeyRole.PHYSICIAN)
        assert str(refused.value) == "More than one physician role key is active."


def test_a_key_is_pinned_only_while_its_fingerprint_matches_and_the_deployment_pins_it(
    runtime, team
):
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        key = physician_key(custody)
        assert custody.is_pinned(key)
        custody.require_pinned(key)

        stored = key.fingerprint
        key.fingerprint = "0" * 64  # a fingerprint column that does not match the key
        assert not custody.is_pinned(key)
        with pytest.raises(KeyIntegrityFailure) as refused:
            custody.require_pinned(key)
        assert str(refused.value) == "The physician role key does not match its fingerprint."
        key.fingerprint = stored

        runtime.pins.retire(KeyRole.PHYSICIAN, [stored])
        assert not custody.is_pinned(key)
        with pytest.raises(KeyIntegrityFailure):
            custody.require_pinned(key)
        session.rollback()


def test_a_successor_is_trusted_on_its_fingerprint_not_a_pin(runtime, team):
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        successor, _ = custody.create_role_key(KeyRole.PHYSICIAN, RoleKeyStatus.SUCCESSOR)
        custody.require_trusted(successor)  # never pinned
        successor.fingerprint = "0" * 64
        with pytest.raises(KeyIntegrityFailure) as refused:
            custody.require_trusted(successor)
        assert str(refused.value) == "The physician role key does not match its fingerprint."
        session.rollback()


# -- granting -------------------------------------------------------------------------------------


def test_a_grant_is_sealed_to_the_holder_once_and_names_who_granted_it(runtime, team):
    clinician, _, colleague = team
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        key, handle = pinned_pending(runtime, custody)
        printed = custody.grant(key, handle, colleague.id, granted_by=None)
        again = custody.grant(key, handle, colleague.id, granted_by=clinician.id)

        holder = custody.verified_personal_key(colleague.id)
        assert printed == again == hybrid_kem.public_key_fingerprint(holder.public_key)
        rows = session.scalars(select(RoleKeyGrant).where(RoleKeyGrant.role_key_id == key.id))
        [(account, granted_by, created_at)] = [
            (row.account_id, row.granted_by, row.created_at) for row in rows
        ]
        assert (account, granted_by, created_at) == (colleague.id, clinician.id, custody.now)
        assert custody.holders(key.id) == [colleague.id]


def test_a_grant_of_a_key_not_pinned_or_not_matching_is_refused(runtime, team):
    _, _, colleague = team
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        key, handle = custody.create_role_key(KeyRole.PHYSICIAN, RoleKeyStatus.PENDING)
        with pytest.raises(KeyIntegrityFailure):
            custody.grant(key, handle, colleague.id, granted_by=None)  # not pinned

        # A rotation's pending key under environment pins: the fingerprint is still checked.
        stored, key.fingerprint = key.fingerprint, "0" * 64
        with pytest.raises(KeyIntegrityFailure) as refused:
            custody.grant(key, handle, colleague.id, granted_by=None, require_pin=False)
        assert str(refused.value) == "The physician role key does not match its fingerprint."
        key.fingerprint = stored

        other = hybrid_kem.generate_kem_keypair()
        with pytest.raises(KeyIntegrityFailure) as refused:
            custody.grant(key, other, colleague.id, granted_by=None, require_pin=False)
        assert str(refused.value) == "The held role key does not match the stored role key."
        assert custody.holders(key.id) == []
        session.rollback()


# -- who holds what -------------------------------------------------------------------------------


def test_granted_roles_are_named_once_each_in_order(runtime, team):
    clinician, compliance, colleague = team
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        key, handle = pinned_pending(runtime, custody)
        custody.grant(key, handle, colleague.id, granted_by=None)  # a second physician version
        assert custody.granted_roles(colleague.id) == ["physician"]
        assert custody.granted_roles(compliance.id) == ["archive"]
        assert custody.granted_roles(clinician.id) == ["physician"]


def test_revoking_one_role_leaves_the_others_and_revoking_all_leaves_none(runtime, team):
    clinician, compliance, colleague = team
    [archive_handle] = sign_in(runtime, compliance).principal.keyring.role_keys(KeyRole.ARCHIVE)
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        archive = custody.role_keys(KeyRole.ARCHIVE, RoleKeyStatus.ACTIVE)[0]
        # The colleague holds both roles' keys (the archive key from its holder's session).
        custody.grant(archive, archive_handle.key, colleague.id, granted_by=None)
        assert custody.revoke_grants(colleague.id, KeyRole.PHYSICIAN) == 1
        assert custody.granted_roles(colleague.id) == ["archive"]
        assert custody.revoke_grants(colleague.id) == 1
        assert custody.granted_roles(colleague.id) == []
        assert custody.granted_roles(clinician.id) == ["physician"]  # nobody else's


# -- a loss of access -----------------------------------------------------------------------------


def test_a_loss_marks_the_active_and_pending_keys_once_records_a_removal_and_a_successor(
    runtime, team
):
    _, _, colleague = team
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        pending, _ = custody.create_role_key(KeyRole.PHYSICIAN, RoleKeyStatus.PENDING)
        first_mark = custody.now
        marked = custody.mark_rotation_due(KeyRole.PHYSICIAN, "r" * 80, lost=colleague.id)
        assert [row.version for row in marked] == [1, 2]
        for row in marked:
            assert (row.rotation_due_at, row.rotation_reason) == (first_mark, "r" * 64)
        [removal] = session.scalars(select(KeyReaderRemoval)).all()
        assert (removal.role, removal.reason, removal.created_at) == (
            "physician",
            "r" * 64,
            first_mark,
        )
        [successor] = custody.role_keys(KeyRole.PHYSICIAN, RoleKeyStatus.SUCCESSOR)
        assert colleague.id not in custody.holders(successor.id)

    runtime.clock.advance(seconds=60)  # type: ignore[attr-defined]
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        again = custody.mark_rotation_due(KeyRole.PHYSICIAN, "a later loss")
        # The earliest mark and its reason stay: the rotation has been due since then.
        assert [(row.rotation_due_at, row.rotation_reason) for row in again] == [
            (first_mark, "r" * 64),
            (first_mark, "r" * 64),
        ]
        removals = session.scalar(select(func.count()).select_from(KeyReaderRemoval))
        assert removals == 2
        assert pending.id in {row.id for row in again}


def test_a_loss_before_keys_init_marks_and_records_nothing(runtime):
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        assert custody.mark_rotation_due(KeyRole.PHYSICIAN, "revoked") == []
        assert session.scalar(select(func.count()).select_from(KeyReaderRemoval)) == 0
        assert custody.role_keys(KeyRole.PHYSICIAN) == []


# -- holding the current key ---------------------------------------------------------------------


def test_a_session_holds_the_current_key_through_its_keyring_or_its_personal_key(runtime, team):
    clinician, compliance, _ = team
    doctor = sign_in(runtime, clinician).principal.keyring
    officer = sign_in(runtime, compliance).principal.keyring
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        assert custody.holds_current(doctor, KeyRole.PHYSICIAN)
        assert not custody.holds_current(doctor, KeyRole.ARCHIVE)
        assert custody.holds_current(officer, KeyRole.ARCHIVE)
        assert not custody.holds_current(officer, KeyRole.PHYSICIAN)

        # A keyring holding only a retired version: its personal key opens the current grant.
        retired, retired_handle = custody.create_role_key(KeyRole.PHYSICIAN, RoleKeyStatus.RETIRED)
        stale = Keyring(
            doctor.account_id,
            doctor.personal,
            doctor.personal_key_row_id,
            (HeldRoleKey(retired.id, "physician", retired_handle),),
        )
        assert custody.holds_current(stale, KeyRole.PHYSICIAN)
        # Without a personal key nothing else can be opened: it holds nothing current.
        keyless = Keyring(doctor.account_id, roles=stale.roles)
        assert not custody.holds_current(keyless, KeyRole.PHYSICIAN)
        # A held id of another role's key does not count for this role.
        archive = custody.role_keys(KeyRole.ARCHIVE, RoleKeyStatus.ACTIVE)[0]
        mislabelled = Keyring(
            doctor.account_id, roles=(HeldRoleKey(archive.id, "physician", retired_handle),)
        )
        assert not custody.holds_current(mislabelled, KeyRole.PHYSICIAN)
        session.rollback()
