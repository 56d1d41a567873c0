"""A reader that listed a role key just before a rotation retired it (found by the concurrent
rotation test under load: a doctor's send failed with "not pinned").

A rotation commits the old key's retirement and then unpins it. A doctor signed in before the
rotation, whose session cannot open a re-sealed wrap, lists the role keys their personal key
opens today; that list can be read just before the retirement commits and its pin check run
just after the unpin. The key is then retired, not planted: it is left out, and the doctor's
fresher key (the new one) opens the conversation. A key the database still calls live and
the deployment does not pin stays refused.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from access_control.errors import ConfigurationError
from access_control.roles import Role
from medchat.errors import KeyIntegrityFailure
from medchat.keys.custody import KeyCustody
from medchat.models import KeyRole, RoleKey, RoleKeyStatus
from medchat.services.context import verify_role_key_pins
from tests.support.accounts import init_role_keys, make_staff
from tests.support.sessions import sign_in


@pytest.fixture
def doctor(runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    init_role_keys(runtime, clinician, make_staff(runtime, Role.COMPLIANCE))
    return sign_in(runtime, clinician).principal


def _physician_key(session) -> RoleKey:
    return session.scalars(select(RoleKey).where(RoleKey.role == KeyRole.PHYSICIAN)).one()


def _unpinned_between_listing_and_check(monkeypatch, runtime, *, retire: bool) -> None:
    """At the first pin check, what a rotation's last step does in between: the retirement
    (``retire``) written by another transaction, then the unpin."""
    checked = KeyCustody.require_trusted
    done = []

    def after_the_rotation(custody: KeyCustody, row: RoleKey) -> None:
        if not done and row.role == KeyRole.PHYSICIAN:
            done.append(row.id)
            if retire:
                # The rotation's own write, in the table (the row as loaded stays "active").
                custody.session.execute(
                    update(RoleKey.__table__)
                    .where(RoleKey.__table__.c.id == row.id)
                    .values(status=RoleKeyStatus.RETIRED)
                )
            runtime.pins.retire(str(row.role), [row.fingerprint])
        checked(custody, row)

    monkeypatch.setattr(KeyCustody, "require_trusted", after_the_rotation)


def test_a_key_retired_after_it_was_listed_is_left_out(runtime, doctor, monkeypatch):
    _unpinned_between_listing_and_check(monkeypatch, runtime, retire=True)

    with runtime.database.transaction() as session:
        held = runtime.custody(session).open_grants(doctor.id, doctor.keyring.personal)

    assert [key.role for key in held] == []


def test_a_live_key_unpinned_after_it_was_listed_is_refused(runtime, doctor, monkeypatch):
    _unpinned_between_listing_and_check(monkeypatch, runtime, retire=False)

    with runtime.database.transaction() as session, pytest.raises(KeyIntegrityFailure):
        runtime.custody(session).open_grants(doctor.id, doctor.keyring.personal)


# The same window at start-up: a host starting while another host's rotation ends lists the
# keys in use, then checks their pins.


def test_a_host_starting_as_a_rotation_retires_a_key_starts(runtime, doctor, monkeypatch):
    _unpinned_between_listing_and_check(monkeypatch, runtime, retire=True)

    verify_role_key_pins(runtime)  # starts: the key is retired, nothing is sealed to it


def test_a_host_starting_with_a_live_key_unpinned_refuses_to_start(runtime, doctor, monkeypatch):
    _unpinned_between_listing_and_check(monkeypatch, runtime, retire=False)

    with pytest.raises(ConfigurationError, match=r"physician role key version 1 .* is not pinned"):
        verify_role_key_pins(runtime)


def test_the_keys_after_one_retired_meanwhile_are_still_opened(runtime, doctor, monkeypatch):
    """Passing over the retired version goes on to the next grant
    (``open_grants__mutmut_27``: ``continue`` made ``break``)."""
    keyring = doctor.keyring
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        newer, handle = custody.create_role_key(KeyRole.PHYSICIAN, RoleKeyStatus.PENDING)
        runtime.pins.add(KeyRole.PHYSICIAN, [newer.fingerprint])
        custody.grant(newer, handle, doctor.id, granted_by=doctor.id)
        newer_id = newer.id
    _unpinned_between_listing_and_check(monkeypatch, runtime, retire=True)

    with runtime.database.transaction() as session:
        held = runtime.custody(session).open_grants(doctor.id, keyring.personal)

    assert [key.role_key_id for key in held] == [newer_id]
