"""Role keys in custody, where a rule does not show in plain use: the locks that order a
rotation against sealers and revocations (PostgreSQL's advisory locks, read from
``pg_locks``), and the rules that only show at their edges.

Whether a lock is taken changes nothing one transaction returns, so each is read from
``pg_locks`` in the transaction that takes it (SQLite takes the write lock at BEGIN and has
none). The edges are what an ordinary use of a key never reaches: the active key among other
versions, which pending key awaits its pin, a session holding the current key without its
personal key, which grants ``open_grants`` opens and which it passes over without stopping, a
grant opening to another key than its role key, an account without keys. Most were pinned
where mutation testing of ``medchat.keys.custody`` found no test failing (docs/testing.md,
"Mutation testing of the security core"). The rules in plain use (making a version, the checks
before a key is used, granting, who holds what, a loss of access, holding the current key)
are in ``test_custody.py``.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from access_control import hybrid_kem
from access_control.keyring import Keyring
from access_control.pins import RolePins
from access_control.roles import Role
from medchat.errors import KeyIntegrityFailure
from medchat.keys.custody import KeyCustody
from medchat.models import (
    KeyRole,
    RoleKey,
    RoleKeyGrant,
    RoleKeyRotation,
    RoleKeyStatus,
)
from tests.support.accounts import make_staff
from tests.support.rotation import physician_key, team_with_colleague
from tests.support.sessions import sign_in


@pytest.fixture
def team(runtime):
    """The first physician and archive holders, and a colleague granted the physician key."""
    return team_with_colleague(runtime)


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
