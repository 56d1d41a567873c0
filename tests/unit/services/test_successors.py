"""Successor role keys at the service layer: what a loss records, which key a new epoch is
wrapped to while a rotation is under way. The attacks (a leaver reading what is written
after the loss) are in tests/security/test_successor_keys.py."""

from __future__ import annotations

import pytest

from access_control.roles import Role
from medchat.keys.successors import appoint_successor, sealing_key
from medchat.models import KeyRole, RoleKeyStatus
from tests.support.accounts import init_role_keys, make_staff
from tests.support.audit import audit_records
from tests.support.rotation import grant


@pytest.fixture
def doctors(runtime):
    """Three physician key holders: the first holder and two colleagues granted by them."""
    first = make_staff(runtime, Role.CLINICIAN)
    init_role_keys(runtime, first, make_staff(runtime, Role.COMPLIANCE))
    colleagues = [
        make_staff(runtime, Role.CLINICIAN, first_name=name, last_name="Roux")
        for name in ("Bea", "Cy")
    ]
    for colleague in colleagues:
        grant(runtime, first, colleague)
    return [first, *colleagues]


def test_each_loss_records_the_successor_and_every_version_it_succeeds(runtime, doctors):
    _, bea, cy = doctors
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        one = appoint_successor(session, custody, KeyRole.PHYSICIAN, "revoked", lost=bea.id)
        two = appoint_successor(session, custody, KeyRole.PHYSICIAN, "r" * 80, lost=cy.id)
        assert one is not None and two is not None
        made = [(one.id, one.version, one.fingerprint), (two.id, two.version, two.fingerprint)]

    (one_id, one_version, one_print), (two_id, two_version, two_print) = made
    assert (one_version, two_version) == (2, 3)
    assert audit_records(runtime, "role_key.successor") == [
        (
            "role_key",
            str(one_id),
            {
                "role": "physician",
                "version": 2,
                "fingerprint": one_print,
                "reason": "revoked",
                "holders": 2,  # the first holder and Cy: Bea lost it
                "succeeds_versions": [1],
            },
        ),
        (
            "role_key",
            str(two_id),
            {
                "role": "physician",
                "version": 3,
                "fingerprint": two_print,
                "reason": "r" * 64,
                "holders": 2,  # the first holder and Bea (whose old grant was not deleted here)
                "succeeds_versions": [1, 2],
            },
        ),
    ]


def test_a_new_epoch_goes_to_the_active_key_not_a_rotations_pending_one(runtime, doctors):
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        pending, _ = custody.create_role_key(KeyRole.PHYSICIAN, RoleKeyStatus.PENDING)
        runtime.pins.add(KeyRole.PHYSICIAN, [pending.fingerprint])
        chosen = sealing_key(custody, KeyRole.PHYSICIAN)
        assert chosen.active.status == RoleKeyStatus.ACTIVE
        assert chosen.key.id == chosen.active.id


def test_a_new_epoch_goes_to_the_newest_successor_during_a_rotation(runtime, doctors):
    _, bea, _ = doctors
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        successor = appoint_successor(session, custody, KeyRole.PHYSICIAN, "revoked", lost=bea.id)
        assert successor is not None
        pending, _ = custody.create_role_key(KeyRole.PHYSICIAN, RoleKeyStatus.PENDING)
        runtime.pins.add(KeyRole.PHYSICIAN, [pending.fingerprint])
        chosen = sealing_key(custody, KeyRole.PHYSICIAN)
        assert chosen.key.id == successor.id


def test_a_loss_during_a_rotation_succeeds_the_active_key_not_the_pending_one(runtime, doctors):
    _, bea, _ = doctors
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        pending, _ = custody.create_role_key(KeyRole.PHYSICIAN, RoleKeyStatus.PENDING)
        successor = appoint_successor(session, custody, KeyRole.PHYSICIAN, "revoked", lost=bea.id)
        assert successor is not None
        assert (pending.version, successor.version) == (2, 3)

    [(_, _, details)] = audit_records(runtime, "role_key.successor")
    assert details["succeeds_versions"] == [1]
