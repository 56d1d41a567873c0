"""The member re-wrap queue (``medchat.keys.member_rewrap``, SECURITY-MODEL key hierarchy 7): real
database, real crypto, no HTTP; and the ``medchat keys rewrap`` worker.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat import audit
from medchat.errors import RoleKeyRequired
from medchat.keys.member_rewrap import RewrapQueue
from medchat.keys.personal_keys import PersonalKeys
from medchat.models import (
    Conversation,
    Holder,
    RewrapRequest,
)
from tests.support.accounts import Person, code_for, make_member, make_staff
from tests.support.audit import audit_entries
from tests.support.cli import cli_runner
from tests.support.rewrap import drain, member_wraps, pending, reset, with_history
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql
from tests.support.wraps import assert_only_the_three_holders


@pytest.fixture
def app(make_app, tmp_path):
    return make_app(mail_url=f"file://{tmp_path / 'mail'}")


def test_draining_needs_a_clinician_session_holding_the_physician_key(runtime, team):
    member, _ = with_history(runtime, 1)
    reset(runtime, member)
    keyless = make_staff(runtime, Role.CLINICIAN)
    for person in (keyless, team.compliance, make_member(runtime)):
        with pytest.raises(RoleKeyRequired):
            drain(runtime, sign_in(runtime, person).principal)
    assert pending(runtime) == 1


def test_a_reset_drops_the_old_member_wraps_and_queues_each_live_conversation(
    runtime, team, clinician
):
    member, started = with_history(runtime, 3)
    # A conversation no longer live (a later "sealed" state) is not the member's to read.
    execute_sql(
        runtime, "UPDATE conversations SET status = 'sealed' WHERE id = :c", c=started[2].id
    )
    assert len(member_wraps(runtime, member.id)) == 3

    reset(runtime, member)

    assert member_wraps(runtime, member.id) == []
    with runtime.database.transaction() as session:
        requests = list(session.scalars(select(RewrapRequest)))
        current = runtime.custody(session).personal_key(member.id)
    assert {r.conversation_id for r in requests} == {started[0].id, started[1].id}
    assert {r.personal_key_id for r in requests} == {current.id}
    assert_only_the_three_holders(
        runtime,
        member.id,
        physician=clinician.keyring,
        archive=sign_in(runtime, team.compliance).principal.keyring,
        member=None,
    )


def test_a_drain_reseals_to_the_current_key_and_audits_each_conversation(runtime, team, clinician):
    member, started = with_history(runtime, 2)
    member = reset(runtime, member)

    result = drain(runtime, clinician)

    assert (result.rewrapped, result.superseded, result.skipped) == (2, 0, 0)
    assert pending(runtime) == 0
    keyring = sign_in(runtime, member).principal.keyring
    holders = assert_only_the_three_holders(
        runtime,
        member.id,
        physician=clinician.keyring,
        archive=sign_in(runtime, team.compliance).principal.keyring,
        member=keyring,
    )
    assert holders == {"physician": 2, "archive": 2, "member": 2}
    with runtime.database.transaction() as session:
        keys = runtime.conversation_keys(session)
        for item in started:
            conversation = session.get(Conversation, item.id)
            assert keys.open_key(conversation, keyring, Holder.MEMBER).of(1) == item.dek
    entries = audit_entries(runtime, "conversation.rewrap")
    assert sorted(e.target_id for e in entries) == sorted(str(s.id) for s in started)
    assert {e.subject_id for e in entries} == {member.id}


def test_the_oldest_requests_go_first_and_a_drain_stops_at_its_limit(runtime, clinician):
    first, first_started = with_history(runtime, 1)
    second, _ = with_history(runtime, 2)
    reset(runtime, first)
    runtime.clock.advance(minutes=1)
    reset(runtime, second)

    assert drain(runtime, clinician, limit=1).rewrapped == 1

    assert [w.conversation_id for w in member_wraps(runtime, first.id)] == [first_started[0].id]
    assert member_wraps(runtime, second.id) == []
    assert pending(runtime) == 2
    assert drain(runtime, clinician, limit=0).rewrapped == 0


def test_a_request_for_a_key_that_is_no_longer_current_is_dropped(runtime, clinician, monkeypatch):
    # The reset deletes the key it retires (nothing is sealed to it); a race can leave a
    # request for it before that: keep the retired key row here, as such a race would.
    monkeypatch.setattr(PersonalKeys, "forget_retired", lambda *args, **kwargs: (0, None))
    member, started = with_history(runtime, 1)
    reset(runtime, member)
    with runtime.database.transaction() as session:
        (request,) = session.scalars(select(RewrapRequest))
        stale_key = request.personal_key_id
    reset(runtime, member, "saffron-glacier-otter-29")
    # A request left from the first reset (as a race with the second could leave it).
    with runtime.database.transaction() as session:
        session.add(
            RewrapRequest(
                conversation_id=started[0].id,
                member_id=member.id,
                personal_key_id=stale_key,
                created_at=runtime.clock.now() - timedelta(minutes=5),
            )
        )

    result = drain(runtime, clinician)

    assert (result.rewrapped, result.superseded) == (1, 1)
    with runtime.database.transaction() as session:
        current = runtime.custody(session).personal_key(member.id)
    assert [w.recipient_key_id for w in member_wraps(runtime, member.id)] == [current.key_id]


def test_a_member_wrap_left_sealed_to_a_retired_key_is_removed(runtime, clinician):
    member, started = with_history(runtime, 1)
    with runtime.database.transaction() as session:
        old_key = runtime.custody(session).personal_key(member.id)
    reset(runtime, member)
    # A wrap to the retired key written after the reset's clean-up (a racing old request).
    with runtime.database.transaction() as session:
        conversation = session.get(Conversation, started[0].id)
        runtime.conversation_keys(session).add_wrap(
            conversation,
            started[0].dek,
            Holder.MEMBER,
            member.id,
            old_key.public_key,
            old_key.key_id,
            runtime.clock.now(),
        )

    assert drain(runtime, clinician).rewrapped == 1

    assert old_key.key_id not in {w.recipient_key_id for w in member_wraps(runtime, member.id)}
    assert len(member_wraps(runtime, member.id)) == 1


def test_an_altered_conversation_stays_queued_and_the_others_go_on(runtime, clinician, caplog):
    member, started = with_history(runtime, 3)
    reset(runtime, member)
    execute_sql(
        runtime,
        "UPDATE conversations SET key_commitment = :c WHERE id = :id",
        c=bytes(32),
        id=started[1].id,
    )

    with caplog.at_level(logging.ERROR, logger="medchat.rewrap"):
        result = drain(runtime, clinician)

    assert (result.rewrapped, result.skipped) == (2, 1)
    with runtime.database.transaction() as session:
        (left,) = session.scalars(select(RewrapRequest))
    assert left.conversation_id == started[1].id
    assert "KeyIntegrityFailure" in caplog.text
    assert {e.target_id for e in audit_entries(runtime, "conversation.rewrap")} == {
        str(started[0].id),
        str(started[2].id),
    }


def test_a_quiet_drain_that_fails_rolls_back_its_work_and_its_audit_entries(
    runtime, clinician, monkeypatch, caplog
):
    member, _ = with_history(runtime, 2)
    reset(runtime, member)
    original = RewrapQueue._rewrap
    calls = []

    def second_one_breaks(self, actor, request):
        calls.append(request.id)
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return original(self, actor, request)

    monkeypatch.setattr(RewrapQueue, "_rewrap", second_one_breaks)

    with caplog.at_level(logging.ERROR), runtime.database.transaction() as session:
        audit.record(session, "test.own_work")  # the clinician's request, before the drain
        assert RewrapQueue(session, runtime).drain_quietly(clinician, 10) is None

    assert len(calls) == 2 and "re-wrap drain failed" in caplog.text
    assert pending(runtime) == 2
    assert member_wraps(runtime, member.id) == []
    assert audit_entries(runtime, "conversation.rewrap") == []
    # The first re-seal's savepoint was released before the failure: the request's own
    # entries must not have been appended there and lost with the enclosing rollback.
    assert len(audit_entries(runtime, "test.own_work")) == 1


@pytest.mark.postgresql_only
def test_two_concurrent_drains_process_each_request_once(runtime, clinician):
    if not runtime.database.is_postgresql:
        pytest.skip("row locks (FOR UPDATE SKIP LOCKED) are PostgreSQL's; SQLite serialises")
    member, started = with_history(runtime, 4)
    reset(runtime, member)
    other = sign_in(runtime, make_staff_with_key(runtime, clinician)).principal
    first_holds_its_rows, second_done = threading.Event(), threading.Event()
    results, errors = {}, []

    def first() -> None:
        try:
            with runtime.database.transaction() as session:
                audit.set_context(session, audit.AuditContext(actor_id=clinician.id))
                results["first"] = RewrapQueue(session, runtime).drain(clinician, 2)
                first_holds_its_rows.set()
                assert second_done.wait(20)
        except BaseException as exc:
            errors.append(exc)
            first_holds_its_rows.set()

    def second() -> None:
        try:
            assert first_holds_its_rows.wait(20)
            with runtime.database.transaction() as session:
                audit.set_context(session, audit.AuditContext(actor_id=other.id))
                results["second"] = RewrapQueue(session, runtime).drain(other, 100)
        except BaseException as exc:
            errors.append(exc)
        finally:
            second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert results["first"].rewrapped == 2 and results["second"].rewrapped == 2
    assert pending(runtime) == 0
    entries = audit_entries(runtime, "conversation.rewrap")
    assert sorted(e.target_id for e in entries) == sorted(str(s.id) for s in started)
    assert {e.actor_id for e in entries} == {clinician.id, other.id}
    assert len(member_wraps(runtime, member.id)) == 4


def make_staff_with_key(runtime, granter) -> Person:
    """A second clinician holding the physician key (granted by ``granter``'s session)."""
    from medchat.models import KeyRole
    from medchat.services.role_keys import RoleKeyService

    colleague = make_staff(runtime, Role.CLINICIAN)
    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).grant(granter, KeyRole.PHYSICIAN, colleague.id)
    return colleague


# -- the worker: medchat keys rewrap ---------------------------------------------------


def rewrap_cli(app, runtime, person: Person, *extra: str, password: str | None = None):
    runtime.clock.advance(seconds=30)
    answers = f"{password or person.password}\n{code_for(person, runtime)}\n"
    return cli_runner(app).invoke(
        args=["keys", "rewrap", "--email", person.email, *extra], input=answers
    )


def test_the_worker_asks_for_password_and_code_and_drains_everything(app, runtime, team):
    member, _ = with_history(runtime, 5)
    reset(runtime, member)

    result = rewrap_cli(app, runtime, team.clinician, "--batch", "2", "--json")

    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert json.loads(line) == {"rewrapped": 5, "superseded": 0, "skipped": 0, "remaining": 0}
    assert team.clinician.password not in result.output
    assert pending(runtime) == 0
    assert {e.actor_id for e in audit_entries(runtime, "conversation.rewrap")} == {
        team.clinician.id
    }


def test_the_worker_prints_progress_for_people(app, runtime, team):
    member, _ = with_history(runtime, 3)
    reset(runtime, member)

    result = rewrap_cli(app, runtime, team.clinician, "--batch", "2")

    assert result.exit_code == 0, result.output
    assert "re-sealed 2, 1 waiting" in result.stderr
    assert result.stdout.strip() == "3 conversations re-sealed, 0 waiting"


def test_the_worker_refuses_a_wrong_password_or_a_clinician_without_the_key(app, runtime, team):
    member, _ = with_history(runtime, 1)
    reset(runtime, member)
    keyless = make_staff(runtime, Role.CLINICIAN)

    wrong = rewrap_cli(app, runtime, team.clinician, password="not-the-password-at-all")
    without_key = rewrap_cli(app, runtime, keyless)

    for result in (wrong, without_key):
        assert result.exit_code == 1
        assert result.stderr.strip().splitlines()[-1].startswith("error:")
    assert pending(runtime) == 1
