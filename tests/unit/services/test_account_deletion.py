"""Account deletion without HTTP: one transaction, and a tombstone that matches no address."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat.errors import Forbidden, InvalidCredentials
from medchat.models import Account, ArchiveRecord, Conversation, PersonalKey
from medchat.services.account_deletion import AccountDeletionService
from medchat.services.deletion import DeletionService
from tests.support.accounts import make_member, make_staff
from tests.support.conversations import start_conversation
from tests.support.messaging import care_team
from tests.support.sessions import attached, sign_in


def _delete(runtime, person, password):
    principal = sign_in(runtime, person).principal
    with runtime.database.transaction() as session:
        attached(principal, session)
        return AccountDeletionService(session, runtime).delete_own(principal, password)


def test_a_failure_half_way_leaves_everything_as_it_was(runtime, monkeypatch):
    care_team(runtime)
    member = make_member(runtime)
    principal = sign_in(runtime, member).principal
    for n in range(2):
        start_conversation(runtime, principal, subject=f"S{n}", bodies=[f"B{n}"])
    calls = []
    seal = DeletionService.seal

    def failing_seal(self, conversation, *, reason):
        calls.append(conversation.id)
        if len(calls) == 2:
            raise RuntimeError("the ledger refused the append")
        return seal(self, conversation, reason=reason)

    monkeypatch.setattr(DeletionService, "seal", failing_seal)
    with pytest.raises(RuntimeError):
        _delete(runtime, member, member.password)
    with runtime.database.transaction() as session:
        account = session.get(Account, member.id)
        assert account.status == "active" and account.password_hash is not None
        statuses = set(session.scalars(select(Conversation.status)))
        assert statuses == {"open"}
        assert session.scalars(select(ArchiveRecord)).all() == []
        assert session.scalars(select(PersonalKey.id)).all()


def test_tombstones_free_the_address_and_match_no_blind_index(runtime):
    first, second = make_member(runtime), make_member(runtime)
    assert _delete(runtime, first, first.password) == "deleted"
    assert _delete(runtime, second, second.password) == "deleted"
    with runtime.database.transaction() as session:
        indexes = set(session.scalars(select(Account.email_index)))
    assert len(indexes) == 2
    assert runtime.profiles.email_index(first.email) not in indexes
    assert runtime.profiles.email_index(second.email) not in indexes


def test_a_wrong_password_or_a_staff_caller_is_refused(runtime):
    member = make_member(runtime)
    with pytest.raises(InvalidCredentials):
        _delete(runtime, member, "not-the-password")
    doctor = make_staff(runtime, Role.CLINICIAN)
    with pytest.raises(Forbidden):
        _delete(runtime, doctor, doctor.password)
