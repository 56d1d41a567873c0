"""Account deletion without HTTP: one transaction, and a tombstone that matches no address."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text

from access_control.roles import Role
from medchat.errors import Forbidden, InvalidCredentials, NotAuthenticated
from medchat.models import Account, ArchiveRecord, Conversation, PersonalKey
from medchat.services.account_deletion import AccountDeletionService
from medchat.services.consent import ConsentService
from medchat.services.deletion import DeletionService
from medchat.services.member_conversations import MemberConversationService
from tests.support.accounts import make_member, make_staff
from tests.support.conversations import start_conversation
from tests.support.messaging import care_team
from tests.support.sessions import attached, sign_in


def _delete(runtime, person, password):
    principal = sign_in(runtime, person).principal
    with runtime.database.transaction() as session:
        attached(principal, session)
        return AccountDeletionService(session, runtime).delete_own(
            principal, password, address="198.51.100.1"
        )


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


@pytest.mark.postgresql_only
def test_a_question_sent_while_the_account_is_being_deleted_is_refused(runtime, monkeypatch):
    """The question's request was authenticated before the deletion committed; its new row
    waits for the deletion's lock on the account, and then must not stay live for a tombstone.
    """
    if not runtime.database.is_postgresql:
        pytest.skip("row locks are PostgreSQL's; SQLite serialises the two units of work")
    care_team(runtime)
    member = make_member(runtime)
    asking = sign_in(runtime, member).principal  # the other device's session
    with runtime.database.transaction() as session:
        ConsentService(session, runtime).grant(attached(asking, session), "2026-01")
    deletion_holds_the_account, question_waits = threading.Event(), threading.Event()
    remove_profile = AccountDeletionService._remove_profile

    def pausing(self, actor):
        remove_profile(self, actor)
        deletion_holds_the_account.set()
        assert question_waits.wait(30)

    monkeypatch.setattr(AccountDeletionService, "_remove_profile", pausing)
    outcomes: dict[str, object] = {}

    def delete_account() -> None:
        try:
            outcomes["deletion"] = _delete(runtime, member, member.password)
        except BaseException as exc:
            outcomes["deletion"] = exc
            deletion_holds_the_account.set()

    def ask() -> None:
        try:
            with runtime.database.transaction() as session:
                outcomes["question"] = MemberConversationService(session, runtime).start(
                    attached(asking, session), subject=None, body="Is this rash serious?"
                )
        except BaseException as exc:
            outcomes["question"] = exc

    deleting = threading.Thread(target=delete_account)
    deleting.start()
    assert deletion_holds_the_account.wait(30)
    question = threading.Thread(target=ask)
    question.start()
    _wait_for_a_lock_wait(runtime, question)
    question_waits.set()
    deleting.join(30)
    question.join(30)

    assert outcomes["deletion"] == "deleted"
    assert isinstance(outcomes["question"], NotAuthenticated), outcomes["question"]
    with runtime.database.transaction() as session:
        live = session.scalars(
            select(Conversation).where(
                Conversation.member_id == member.id, Conversation.status != "sealed"
            )
        ).all()
    assert live == []


def _wait_for_a_lock_wait(runtime, thread: threading.Thread) -> None:
    """Until a backend of this database waits for a row lock (or ``thread`` ended)."""
    deadline = time.monotonic() + 30
    with runtime.database.engine.connect() as connection:
        while time.monotonic() < deadline and thread.is_alive():
            waiting = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            connection.rollback()
            if waiting:
                return
            time.sleep(0.05)
