"""Conversation services without HTTP: real database, real crypto, real sign-ins.

Covers the service contracts the blueprints rely on: consent gates, status transitions,
sealing at rest, idempotent creates (including a real race on PostgreSQL), the patient view
and the queue's keyset order.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid

import pytest
from sqlalchemy import select

from access_control import crypto
from access_control.roles import Role
from medchat.errors import Conflict, ConsentRequired, Forbidden, NotFound, RoleKeyRequired
from medchat.models import AuditEntry, Conversation, IdempotencyRecord, Message
from medchat.services.clinician_conversations import ClinicianConversationService
from medchat.services.consent import ConsentService
from medchat.services.conversations import ConversationService
from medchat.services.idempotency import IdempotencyService, canonical_json
from medchat.services.member_conversations import START_SCOPE, MemberConversationService
from medchat.services.patient_view import PatientView, pseudonym_for
from tests.support.accounts import make_member, make_staff
from tests.support.messaging import care_team, count
from tests.support.sessions import sign_in


@pytest.fixture
def team(runtime):
    return care_team(runtime)


@pytest.fixture
def member(runtime, team):
    person = make_member(runtime)
    principal = sign_in(runtime, person).principal
    with runtime.database.transaction() as session:
        ConsentService(session, runtime).grant(principal, "2026-01")
    return principal


@pytest.fixture
def account(runtime):
    """A signed-in member (no consent needed): enough for idempotency records."""
    return sign_in(runtime, make_member(runtime)).principal


@pytest.fixture
def doctor(runtime, team):
    return sign_in(runtime, team.clinician).principal


def _start(runtime, member, body="Question", subject=None, key=None):
    with runtime.database.transaction() as session:
        return MemberConversationService(session, runtime).start(
            member, subject=subject, body=body, idempotency_key=key
        )


def test_start_seals_subject_and_body_and_reads_them_back(runtime, member):
    created = _start(runtime, member, "Shortness of breath at night", "Breathing").result
    with runtime.database.transaction() as session:
        row = session.get(Conversation, created.id)
        message = session.scalars(select(Message)).one()
        assert b"Breathing" not in row.subject_ciphertext
        assert b"breath" not in message.body_ciphertext
        service = ConversationService(session, runtime)
        _, dek = service.open(member, created.id)
        # The subject is sealed with the conversation as its row (what subject_of expects).
        assert service.subject_of(row, dek) == "Breathing"
        page = service.messages(member, created.id, limit=10)
    assert [m.body for m in page.items] == ["Shortness of breath at night"]
    assert (row.status, row.message_count) == ("open", 1)


def test_only_members_start_and_list_their_own(runtime, member, doctor):
    with pytest.raises(Forbidden), runtime.database.transaction() as session:
        MemberConversationService(session, runtime).start(doctor, subject=None, body="x")
    with pytest.raises(Forbidden), runtime.database.transaction() as session:
        MemberConversationService(session, runtime).list_own(doctor, limit=10)


def test_status_moves_with_the_last_author_and_closed_refuses_writes(runtime, member, doctor):
    conversation_id = _start(runtime, member).result.id

    def status() -> str:
        with runtime.database.transaction() as session:
            return session.get(Conversation, conversation_id).status

    with runtime.database.transaction() as session:
        service = ClinicianConversationService(session, runtime)
        service.claim(doctor, conversation_id)
        service.reply(doctor, conversation_id, "Answer")
    assert status() == "answered"
    with runtime.database.transaction() as session:
        ConversationService(session, runtime).send(member, conversation_id, "Follow-up")
    assert status() == "open"
    with runtime.database.transaction() as session:
        assert (
            ClinicianConversationService(session, runtime).close(doctor, conversation_id)
            == "closed"
        )
    for actor in (member, doctor):
        with pytest.raises(Conflict), runtime.database.transaction() as session:
            ConversationService(session, runtime).send(actor, conversation_id, "Late")
    assert count(runtime, Message) == 3


def test_consent_gates_new_questions_and_messages_from_both_sides(runtime, member, doctor):
    conversation_id = _start(runtime, member).result.id
    with runtime.database.transaction() as session:
        ConsentService(session, runtime).withdraw(member)
        assert ConsentService(session, runtime).state(member.id).granted is False
    with pytest.raises(ConsentRequired), runtime.database.transaction() as session:
        MemberConversationService(session, runtime).start(member, subject=None, body="x")
    for actor in (member, doctor):
        with pytest.raises(ConsentRequired), runtime.database.transaction() as session:
            ConversationService(session, runtime).send(actor, conversation_id, "x")
    with runtime.database.transaction() as session:
        page = ConversationService(session, runtime).messages(member, conversation_id, limit=5)
    assert [m.body for m in page.items] == ["Question"]


def test_clinician_without_role_key_and_strangers(runtime, member, team):
    conversation_id = _start(runtime, member).result.id
    newcomer = sign_in(runtime, make_staff(runtime, Role.CLINICIAN)).principal
    stranger = sign_in(runtime, make_member(runtime)).principal
    with runtime.database.transaction() as session:
        clinician_side = ClinicianConversationService(session, runtime)
        with pytest.raises(RoleKeyRequired):
            clinician_side.queue(newcomer, limit=10)
        with pytest.raises(RoleKeyRequired):
            clinician_side.case(newcomer, conversation_id)
        with pytest.raises(Forbidden):
            clinician_side.queue(stranger, limit=10)
        with pytest.raises(NotFound):
            ConversationService(session, runtime).conversation(stranger, conversation_id)


def test_request_mac_is_keyed_by_the_session_and_binds_account_scope_and_body(runtime, account):
    other = sign_in(runtime, make_member(runtime)).principal
    with runtime.database.transaction() as session:
        service = IdempotencyService(session, runtime)
        payload = {"subject": None, "body": "Question"}
        mac = service.request_mac(account, START_SCOPE, payload)
        assert mac == crypto.mac(
            account.keyring.derive_secret("idempotency"),
            "medchat/idempotency-request/v1",
            account.id,
            START_SCOPE,
            canonical_json(payload),
        )
        # No key the server holds at rest recomputes it.
        for server_key in (runtime.keys.integrity, runtime.keys.profile, runtime.keys.audit_mac):
            assert mac != crypto.mac(
                server_key,
                "medchat/idempotency-request/v1",
                account.id,
                START_SCOPE,
                canonical_json(payload),
            )
        assert mac != crypto.digest(canonical_json(payload))
        assert mac != service.request_mac(other, START_SCOPE, payload)
        assert mac != service.request_mac(account, "message.send:x", payload)
        assert mac != service.request_mac(account, START_SCOPE, {**payload, "body": "Other"})
        # Key order does not matter: the JSON is canonical.
        reordered = dict(reversed(payload.items()))
        assert mac == service.request_mac(account, START_SCOPE, reordered)


@pytest.mark.parametrize("same_body", [True, False], ids=["same-body", "other-body"])
def test_a_racing_claim_waits_for_the_winner_then_replays_or_conflicts(runtime, account, same_body):
    """Two units of work claim one key: the second blocks on the unique constraint
    (PostgreSQL) or the write lock (SQLite) until the first commits, then replays it."""
    payload = {"body": "Question"}
    winner_id, loser_id = uuid.uuid4(), uuid.uuid4()
    outcome: dict[str, object] = {}

    def loser() -> None:
        try:
            with runtime.database.transaction() as session:
                other = payload if same_body else {"body": "Different"}
                outcome["result"] = IdempotencyService(session, runtime).claim(
                    account, "race-key", START_SCOPE, other, loser_id
                )
        except Conflict as exc:
            outcome["result"] = exc

    with runtime.database.transaction() as session:
        assert (
            IdempotencyService(session, runtime).claim(
                account, "race-key", START_SCOPE, payload, winner_id
            )
            is None
        )
        thread = threading.Thread(target=loser)
        thread.start()
        time.sleep(0.3)  # the loser is now waiting on the winner's uncommitted claim
        assert "result" not in outcome
    thread.join(timeout=30)
    if same_body:
        assert outcome["result"] == winner_id
    else:
        assert isinstance(outcome["result"], Conflict)
    with runtime.database.transaction() as session:
        records = session.scalars(select(IdempotencyRecord)).all()
    assert [r.resource_id for r in records] == [winner_id]


def test_replayed_start_creates_nothing(runtime, member):
    first = _start(runtime, member, "Question", "Subject", key="k-1")
    again = _start(runtime, member, "Question", "Subject", key="k-1")
    assert (first.replayed, again.replayed) == (False, True)
    assert again.result.id == first.result.id
    assert [m.id for m in again.result.messages] == [m.id for m in first.result.messages]
    assert (count(runtime, Conversation), count(runtime, Message)) == (1, 1)


def test_pseudonym_depends_on_the_conversation_and_the_server_key_only(runtime):
    conversation_id = uuid.uuid4()
    pseudonym = pseudonym_for(runtime.keys.integrity, conversation_id)
    assert pseudonym == pseudonym_for(runtime.keys.integrity, conversation_id)
    assert pseudonym != pseudonym_for(runtime.keys.integrity, uuid.uuid4())
    assert pseudonym != pseudonym_for(bytes(32), conversation_id)
    assert len(pseudonym) == 10 and pseudonym.startswith("P-")
    assert {f.name for f in dataclasses.fields(PatientView)} == {
        "pseudonym",
        "first_name",
        "birth_date",
        "sex",
    }


def test_queue_shows_the_patient_view_and_audits_each_conversation(runtime, member, doctor):
    ids = [_start(runtime, member, f"Q{n}").result.id for n in range(3)]
    with runtime.database.transaction() as session:
        page = ClinicianConversationService(session, runtime).queue(doctor, limit=2)
    with runtime.database.transaction() as session:
        audited = session.scalars(
            select(AuditEntry.target_id).where(AuditEntry.action == "content.read.queue")
        ).all()
    assert sorted(audited) == sorted(str(item.id) for item in page.items)
    assert [item.id for item in page.items] == sorted(ids)[:2]  # same instant: id order
    assert page.next_cursor == (page.items[-1].last_message_at, page.items[-1].id)
    assert all(isinstance(item.patient, PatientView) for item in page.items)
    assert not hasattr(page.items[0], "member_id")
    with runtime.database.transaction() as session:
        rest = ClinicianConversationService(session, runtime).queue(
            doctor, limit=2, after=page.next_cursor
        )
    assert [item.id for item in rest.items] == sorted(ids)[2:]
    assert rest.next_cursor is None
