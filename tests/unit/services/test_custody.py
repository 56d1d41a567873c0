"""Role keys in custody, rule by rule: making a version, the checks before a key is used or
granted, what a loss of access records, who holds what, and the locks that order a rotation
against sealers and revocations (PostgreSQL's advisory locks, read from ``pg_locks``).

The attacks these rules stop are in tests/security (planted keys, retired keys, a rotation
under load); here each rule of ``medchat.keys.custody`` is pinned on its own.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text

from access_control import hybrid_kem
from access_control.keyring import HeldRoleKey, Keyring
from access_control.pins import RolePins
from access_control.roles import Role
from medchat.errors import KeyIntegrityFailure, KeysNotInitialized
from medchat.keys.custody import KeyCustody
from medchat.models import (
    KeyReaderRemoval,
    KeyRole,
    RoleKey,
    RoleKeyGrant,
    RoleKeyRotation,
    RoleKeyStatus,
)
from tests.support.accounts import init_role_keys, make_staff
from tests.support.rotation import grant
from tests.support.sessions import sign_in


@pytest.fixture
def team(runtime):
    """The first physician and archive holders, and a colleague granted the physician key."""
    clinician = make_staff(runtime, Role.CLINICIAN)
    compliance = make_staff(runtime, Role.COMPLIANCE)
    init_role_keys(runtime, clinician, compliance)
    colleague = make_staff(runtime, Role.CLINICIAN, first_name="Bea", last_name="Roux")
    grant(runtime, clinician, colleague)
    return clinician, compliance, colleague


def physician_key(custody) -> RoleKey:
    return custody.role_keys(KeyRole.PHYSICIAN, RoleKeyStatus.ACTIVE)[0]


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


# -- the locks (PostgreSQL) -----------------------------------------------------------------------


def advisory_locks(session) -> set[tuple[int, str]]:
    """This transaction's advisory locks as (64-bit key, mode)."""
    rows = session.execute(
        text(
            "SELECT classid, objid, mode FROM pg_locks "
            "WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
    )
    return {
        (int.from_bytes((classid << 32 | objid).to_bytes(8, "big"), "big", signed=True), mode)
        for classid, objid, mode in rows
    }


def lock_key(purpose: str, role: str) -> int:
    label = hashlib.sha256(f"medchat/{purpose}/{role}".encode()).digest()
    return int.from_bytes(label[:8], "big", signed=True)


def test_sealers_share_the_roles_sealing_lock_and_revocations_hold_the_grant_locks(runtime, team):
    if not runtime.database.is_postgresql:
        pytest.skip("advisory locks are PostgreSQL's (SQLite takes the write lock at BEGIN)")
    _, _, colleague = team
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        custody.active_role_key(KeyRole.PHYSICIAN)
        assert advisory_locks(session) == {(lock_key("role-key-sealing", "physician"), "ShareLock")}
    with runtime.database.transaction() as session:
        runtime.custody(session).hold_sealing_lock(KeyRole.ARCHIVE, exclusive=True)
        assert advisory_locks(session) == {
            (lock_key("role-key-sealing", "archive"), "ExclusiveLock")
        }
    with runtime.database.transaction() as session:
        runtime.custody(session).revoke_grants(colleague.id, KeyRole.PHYSICIAN)
        assert advisory_locks(session) == {
            (lock_key("role-key-grants", "physician"), "ExclusiveLock")
        }
    with runtime.database.transaction() as session:
        runtime.custody(session).revoke_grants(colleague.id)
        assert advisory_locks(session) == {
            (lock_key("role-key-grants", "archive"), "ExclusiveLock"),
            (lock_key("role-key-grants", "physician"), "ExclusiveLock"),
        }


# -- rules that only show at their edges ----------------------------------------------------------


def test_the_active_key_is_found_among_pending_retired_and_successor_versions(runtime, team):
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        for status in (RoleKeyStatus.PENDING, RoleKeyStatus.RETIRED, RoleKeyStatus.SUCCESSOR):
            custody.create_role_key(KeyRole.PHYSICIAN, status)
        assert custody.active_role_key(KeyRole.PHYSICIAN).version == 1
        session.rollback()


def custody_pinned_by_environment(runtime, session, *pins: str) -> KeyCustody:
    """The same custody under ``MEDCHAT_ROLE_KEY_PINS`` naming these keys (a bare
    fingerprint is a physician key's)."""
    value = ",".join(pin if ":" in pin else f"physician:{pin}" for pin in pins)
    return KeyCustody(
        session,
        integrity_key=runtime.keys.integrity,
        pins=RolePins(runtime.settings.key_dir, value),
        scrypt=runtime.scrypt,
        now=runtime.clock.now(),
    )


def rotation_to(session, old: RoleKey, new: RoleKey, *, finished: bool) -> None:
    now = datetime.now(UTC)
    session.add(
        RoleKeyRotation(
            id=uuid.uuid4(),
            role=old.role,
            from_key_id=old.id,
            to_key_id=new.id,
            started_by=None,
            started_at=now,
            finished_at=now if finished else None,
        )
    )
    session.flush()


def test_only_a_pending_key_of_an_unfinished_rotation_under_environment_pins_awaits_its_pin(
    runtime, team
):
    with runtime.database.transaction() as session:
        active = physician_key(runtime.custody(session))
        pending, _ = runtime.custody(session).create_role_key(
            KeyRole.PHYSICIAN, RoleKeyStatus.PENDING
        )
        other, _ = runtime.custody(session).create_role_key(
            KeyRole.PHYSICIAN, RoleKeyStatus.PENDING
        )
        custody = custody_pinned_by_environment(runtime, session, active.fingerprint)
        assert not custody.awaiting_pin(pending)  # no rotation makes it
        rotation_to(session, active, other, finished=False)
        assert not custody.awaiting_pin(pending)  # an unfinished rotation, of another key
        rotation_to(session, active, pending, finished=True)
        assert not custody.awaiting_pin(pending)  # its rotation is over (abandoned)
        rotation_to(session, active, pending, finished=False)
        assert custody.awaiting_pin(pending)
        # Pinned now: nothing to await. A pin file is never "awaited": its keys are pinned
        # before they exist.
        pinned = custody_pinned_by_environment(
            runtime, session, active.fingerprint, pending.fingerprint
        )
        assert not pinned.awaiting_pin(pending)
        assert not runtime.custody(session).awaiting_pin(pending)
        # A key its rotation activated already is never awaited, pinned or not.
        pending.status = RoleKeyStatus.ACTIVE
        assert not custody.awaiting_pin(pending)
        session.rollback()


def test_a_session_holding_the_current_key_holds_it_without_its_personal_key(runtime, team):
    clinician, _, _ = team
    doctor = sign_in(runtime, clinician).principal.keyring
    roles_only = Keyring(doctor.account_id, roles=doctor.roles)
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        assert custody.holds_current(roles_only, KeyRole.PHYSICIAN)
        assert not custody.holds_current(roles_only, KeyRole.ARCHIVE)


def test_grants_of_retired_keys_and_of_other_accounts_are_not_opened(runtime, team, monkeypatch):
    clinician, _, colleague = team
    doctor = sign_in(runtime, clinician).principal.keyring
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        retired, handle = custody.create_role_key(KeyRole.PHYSICIAN, RoleKeyStatus.RETIRED)
        runtime.pins.add(KeyRole.PHYSICIAN, [retired.fingerprint])
        custody.grant(retired, handle, clinician.id, granted_by=None)
        unwrapped = []
        unwrap = hybrid_kem.unwrap_key
        monkeypatch.setattr(
            hybrid_kem, "unwrap_key", lambda *a, **k: unwrapped.append(1) or unwrap(*a, **k)
        )
        held = custody.open_grants(clinician.id, doctor.personal)
        # The clinician's one current grant, opened alone: not the retired version's, and
        # not the colleague's (which the clinician's key could not open anyway).
        assert [(h.role, h.role_key_id) for h in held] == [("physician", physician_key(custody).id)]
        assert len(unwrapped) == 1
        assert colleague.id in custody.holders(physician_key(custody).id)
        session.rollback()


def archive_grant_for(runtime, session, archive_key, account_id) -> RoleKeyGrant:
    """The active archive key granted to ``account_id`` (``archive_key``: a holder's copy).
    Its grant comes first in a keyring: archive before physician."""
    custody = runtime.custody(session)
    archive = custody.role_keys(KeyRole.ARCHIVE, RoleKeyStatus.ACTIVE)[0]
    custody.grant(archive, archive_key, account_id, granted_by=None)
    return session.scalars(
        select(RoleKeyGrant).where(
            RoleKeyGrant.role_key_id == archive.id, RoleKeyGrant.account_id == account_id
        )
    ).one()


def test_a_grant_sealed_to_another_personal_key_is_passed_over_and_the_next_opened(runtime, team):
    """(``open_grants__mutmut_41``: ``continue`` made ``break``)"""
    clinician, compliance, colleague = team
    doctor = sign_in(runtime, clinician).principal.keyring
    [archive] = sign_in(runtime, compliance).principal.keyring.role_keys(KeyRole.ARCHIVE)
    with runtime.database.transaction() as session:
        theirs = archive_grant_for(runtime, session, archive.key, colleague.id)
        mine = archive_grant_for(runtime, session, archive.key, clinician.id)
        mine.wrap = theirs.wrap  # what a reset leaves: a copy sealed to a key not mine now
        session.flush()
        custody = runtime.custody(session)
        held = custody.open_grants(clinician.id, doctor.personal)
        assert [(h.role, h.role_key_id) for h in held] == [("physician", physician_key(custody).id)]
        session.rollback()


def test_a_grant_awaiting_its_pin_is_passed_over_and_the_next_opened(runtime, team):
    """(``open_grants__mutmut_24``: ``continue`` made ``break``)"""
    clinician, _, _ = team
    doctor = sign_in(runtime, clinician).principal.keyring
    with runtime.database.transaction() as session:
        active = physician_key(runtime.custody(session))
        archive = runtime.custody(session).role_keys(KeyRole.ARCHIVE, RoleKeyStatus.ACTIVE)[0]
        pending, handle = runtime.custody(session).create_role_key(
            KeyRole.ARCHIVE, RoleKeyStatus.PENDING
        )
        custody = custody_pinned_by_environment(
            runtime, session, f"physician:{active.fingerprint}", f"archive:{archive.fingerprint}"
        )
        custody.grant(pending, handle, clinician.id, granted_by=None, require_pin=False)
        rotation_to(session, archive, pending, finished=False)
        assert custody.awaiting_pin(pending)
        held = custody.open_grants(clinician.id, doctor.personal)
        assert [(h.role, h.role_key_id) for h in held] == [("physician", active.id)]
        session.rollback()


def test_a_grant_that_opens_to_another_key_than_its_role_key_is_refused(runtime, team):
    clinician, _, _ = team
    doctor = sign_in(runtime, clinician).principal.keyring
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        key = physician_key(custody)
        grant = session.scalars(
            select(RoleKeyGrant).where(
                RoleKeyGrant.role_key_id == key.id, RoleKeyGrant.account_id == clinician.id
            )
        ).one()
        grant.wrap = hybrid_kem.wrap_key(
            doctor.personal.public_key_bytes,
            hybrid_kem.generate_kem_keypair().private_bytes_for_storage(),
            recipient_id=clinician.id,
            context_id=key.id,
            purpose=hybrid_kem.PURPOSE_ROLE_KEY,
        )
        session.flush()
        with pytest.raises(KeyIntegrityFailure) as refused:
            custody.open_grants(clinician.id, doctor.personal)
        assert str(refused.value) == "A granted physician key does not match."
        session.rollback()


def test_an_account_without_keys_gets_an_empty_keyring_of_its_own(runtime, team):
    admin = make_staff(runtime, Role.ADMIN)
    with runtime.database.transaction() as session:
        keyring = runtime.custody(session).open_keyring(admin.id, admin.password)
    assert (keyring.account_id, keyring.personal, keyring.roles) == (admin.id, None, ())
