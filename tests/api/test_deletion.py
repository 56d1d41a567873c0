"""A member's deletion request over HTTP (API.md "DELETE /api/v1/conversations/{id}";
SECURITY-MODEL "Deletion, sealed archive, retention").

After ``DELETE`` answers 202 ``{"status": "sealed"}`` the conversation is gone from every
member and clinician route, list and console page (404, as for an id that never existed), its
member and physician wraps no longer exist in the database, and a signed record is in the
archive ledger. Only the member may ask; nobody can undo it. Everything is audited and both
chains verify afterwards.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat import audit
from medchat.errors import NotFound
from medchat.models import (
    ArchiveRecord,
    AuditEntry,
    Conversation,
    ConversationClaim,
    ConversationKeyWrap,
    ConversationRead,
    Holder,
    IdempotencyRecord,
)
from medchat.services.conversations import ConversationService
from medchat.services.deletion import DeletionService
from tests.support.accounts import Person, bearer, login, make_member, make_staff
from tests.support.archive import verify_ledger
from tests.support.console import console_login, csrf_from
from tests.support.messaging import (
    CONVERSATIONS,
    asked,
    care_team,
    claim,
    count,
    give_consent,
    send,
)
from tests.support.sample_files import pdf
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql

SUBJECT = "Deletion canary subject Q7"
BODY = "Deletion canary body Q7: a rash on my arm"
REPLY = "Deletion canary reply Q7: send a photo please"
CLINICIAN = "/api/v1/clinician"


@dataclass
class Case:
    member: Person
    member_tokens: dict[str, Any]
    member_auth: dict[str, str]
    doctor_auth: dict[str, str]
    conversation_id: str
    attachment_id: str


@pytest.fixture
def team(runtime):
    return care_team(runtime)


@pytest.fixture
def case(client, runtime, team) -> Case:
    """A conversation with a question, a clinician's reply, an attachment and a read marker."""
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    conversation_id = asked(client, tokens, BODY, subject=SUBJECT, key="ask-once")
    doctor = bearer(login(client, runtime, team.clinician))
    claim(client, doctor, conversation_id)
    reply = client.post(
        f"{CLINICIAN}/conversations/{conversation_id}/messages",
        json={"body": REPLY},
        headers={**doctor, "Idempotency-Key": "reply-once"},
    )
    assert reply.status_code == 201, reply.get_json()
    upload = client.post(
        f"{CONVERSATIONS}/{conversation_id}/attachments",
        headers=bearer(tokens),
        data={"file": (io.BytesIO(pdf("rash")), "rash.pdf", "application/pdf")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 201, upload.get_json()
    return Case(member, tokens, bearer(tokens), doctor, conversation_id, upload.get_json()["id"])


def delete(client, case: Case, auth: dict[str, str] | None = None) -> Any:
    return client.delete(
        f"{CONVERSATIONS}/{case.conversation_id}", headers=auth or case.member_auth
    )


#: A live conversation's wraps: its archive wrap is gated until it is sealed.
LIVE_HOLDERS = ["archive_gated", "member", "physician"]


def wrap_holders(runtime, conversation_id: str) -> list[str]:
    with runtime.database.transaction() as session:
        return sorted(
            session.scalars(
                select(ConversationKeyWrap.holder).where(
                    ConversationKeyWrap.conversation_id == uuid.UUID(conversation_id)
                )
            )
        )


def test_deletion_answers_202_sealed(client, case):
    response = delete(client, case)
    assert response.status_code == 202
    assert response.get_json() == {"status": "sealed"}


def test_after_deletion_every_member_route_answers_404_and_the_list_omits_it(client, case):
    other = asked(client, case.member_tokens, "Other")
    assert delete(client, case).status_code == 202
    path = f"{CONVERSATIONS}/{case.conversation_id}"
    answers = {
        "read": client.get(path, headers=case.member_auth),
        "messages": client.get(f"{path}/messages", headers=case.member_auth),
        "send": send(client, case.member_tokens, f"{path}/messages", "More"),
        "upload": client.post(
            f"{path}/attachments",
            headers=case.member_auth,
            data={"file": (io.BytesIO(pdf()), "x.pdf", "application/pdf")},
            content_type="multipart/form-data",
        ),
        "download": client.get(
            f"/api/v1/attachments/{case.attachment_id}", headers=case.member_auth
        ),
        "delete again": delete(client, case),
    }
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 404)
    assert all(r.get_json()["error"]["code"] == "not_found" for r in answers.values())
    listed = client.get(CONVERSATIONS, headers=case.member_auth).get_json()["items"]
    assert [item["id"] for item in listed] == [other]


def test_after_deletion_every_clinician_route_answers_404_and_no_queue_lists_it(client, case):
    assert delete(client, case).status_code == 202
    path = f"{CLINICIAN}/conversations/{case.conversation_id}"
    answers = {
        "case": client.get(path, headers=case.doctor_auth),
        "messages": client.get(f"{path}/messages", headers=case.doctor_auth),
        "reply": client.post(f"{path}/messages", json={"body": "Hi"}, headers=case.doctor_auth),
        "close": client.post(f"{path}/close", headers=case.doctor_auth),
        "upload": client.post(
            f"{path}/attachments",
            headers=case.doctor_auth,
            data={"file": (io.BytesIO(pdf()), "x.pdf", "application/pdf")},
            content_type="multipart/form-data",
        ),
        "download": client.get(
            f"{CLINICIAN}/attachments/{case.attachment_id}", headers=case.doctor_auth
        ),
    }
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 404)
    for status in ("open", "answered", "closed"):
        page = client.get(f"{CLINICIAN}/queue?status={status}", headers=case.doctor_auth)
        assert page.status_code == 200
        assert case.conversation_id not in page.get_data(as_text=True)
    sealed_tab = client.get(f"{CLINICIAN}/queue?status=sealed", headers=case.doctor_auth)
    assert sealed_tab.status_code == 422


def test_after_deletion_the_console_answers_404(app, runtime, team, case):
    console = app.test_client()
    console_login(console, runtime, team.clinician)
    page = f"/console/conversations/{case.conversation_id}"
    html = console.get(page).get_data(as_text=True)
    assert SUBJECT in html
    token = csrf_from(html)

    assert delete(app.test_client(), case).status_code == 202

    assert console.get(page).status_code == 404
    assert (
        console.post(f"{page}/reply", data={"csrf_token": token, "body": "Hi"}).status_code == 404
    )
    assert console.post(f"{page}/close", data={"csrf_token": token}).status_code == 404
    assert console.get(f"/console/attachments/{case.attachment_id}").status_code == 404
    for status in ("open", "answered", "closed"):
        queue = console.get(f"/console/queue?status={status}").get_data(as_text=True)
        assert SUBJECT not in queue and case.conversation_id not in queue


def test_the_live_wraps_no_longer_exist_in_the_database(client, runtime, case):
    assert wrap_holders(runtime, case.conversation_id) == LIVE_HOLDERS
    with runtime.database.transaction() as session:
        live = {
            row.wrap
            for row in session.scalars(
                select(ConversationKeyWrap).where(
                    ConversationKeyWrap.conversation_id == uuid.UUID(case.conversation_id),
                    ConversationKeyWrap.holder.in_([Holder.MEMBER, Holder.PHYSICIAN]),
                )
            )
        }

    runtime.clock.advance(seconds=5)  # sealed later than asked: status_since moves with it
    assert delete(client, case).status_code == 202

    assert wrap_holders(runtime, case.conversation_id) == ["archive"]
    with runtime.database.transaction() as session:
        stored = set(session.scalars(select(ConversationKeyWrap.wrap)))
        conversation = session.get(Conversation, uuid.UUID(case.conversation_id))
        assert conversation.status == "sealed" and conversation.sealed_at == runtime.clock.now()
        assert conversation.status_since == conversation.sealed_at
    assert len(live) == 2 and not live & stored


def test_deletion_keeps_the_ciphertexts_under_a_signed_ledger_record(client, runtime, case):
    assert delete(client, case).status_code == 202
    with runtime.database.transaction() as session:
        record = session.scalars(select(ArchiveRecord)).one()
        assert str(record.conversation_id) == case.conversation_id
        assert (record.seq, record.reason, record.message_count) == (1, "member_request", 3)
    assert count(runtime, ArchiveRecord) == 1
    report = verify_ledger(runtime)
    assert report.ok and report.records == 1


def test_deletion_forgets_idempotency_records_read_markers_and_claims(client, runtime, case):
    case_id = uuid.UUID(case.conversation_id)
    with runtime.database.transaction() as session:
        session.add(
            ConversationRead(
                conversation_id=case_id,
                account_id=case.member.id,
                last_read_seq=1,
                read_at=runtime.clock.now(),
            )
        )
    assert count(runtime, IdempotencyRecord) == 2
    assert count(runtime, ConversationClaim) == 1

    assert delete(client, case).status_code == 202

    assert (count(runtime, IdempotencyRecord), count(runtime, ConversationRead)) == (0, 0)
    assert count(runtime, ConversationClaim) == 0


def test_a_conversation_waiting_for_its_re_wrap_can_be_deleted(client, runtime, case):
    """Deletion needs no key: a history not yet re-sealed after a password reset (no member
    wrap, 409 history_pending) is deleted like any other."""
    execute_sql(
        runtime,
        "DELETE FROM conversation_key_wraps WHERE conversation_id = :id AND holder = 'member'",
        id=uuid.UUID(case.conversation_id),
    )
    path = f"{CONVERSATIONS}/{case.conversation_id}"
    assert client.get(path, headers=case.member_auth).status_code == 409

    assert delete(client, case).status_code == 202
    assert wrap_holders(runtime, case.conversation_id) == ["archive"]
    assert verify_ledger(runtime).ok


def test_someone_elses_or_an_unknown_conversation_is_404_and_nothing_changes(client, runtime, case):
    stranger = login(client, runtime, make_member(runtime))
    assert delete(client, case, bearer(stranger)).status_code == 404
    unknown = client.delete(f"{CONVERSATIONS}/{uuid.uuid4()}", headers=case.member_auth)
    assert unknown.status_code == 404
    assert wrap_holders(runtime, case.conversation_id) == LIVE_HOLDERS
    assert count(runtime, ArchiveRecord) == 0


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.ADMIN, Role.COMPLIANCE])
def test_staff_cannot_delete(client, runtime, team, case, role):
    staff = team.clinician if role == Role.CLINICIAN else make_staff(runtime, role)
    response = delete(client, case, bearer(login(client, runtime, staff)))
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
    assert wrap_holders(runtime, case.conversation_id) == LIVE_HOLDERS
    assert count(runtime, ArchiveRecord) == 0


def test_no_route_lets_an_admin_undo_a_deletion(app, client, runtime, case):
    """Nothing turns a sealed conversation back: no route unseals, and an admin reaches no
    conversation or archive route at all (the authorization matrix proves the 403s)."""
    from access_control.permissions import has_permission
    from medchat.web.guard import declared_permission

    assert delete(client, case).status_code == 202
    for rule in app.url_map.iter_rules():
        if "conversation" in rule.rule or "archive" in rule.rule or "retrieval" in rule.rule:
            permission = declared_permission(app.view_functions[rule.endpoint])
            if rule.rule.startswith("/api/") and permission is not None:
                assert rule.rule == "/api/v1/archive/public-key" or not has_permission(
                    Role.ADMIN, permission
                ), rule.rule
    admin = bearer(login(client, runtime, make_staff(runtime, Role.ADMIN)))
    assert delete(client, case, admin).status_code == 403
    assert (
        client.get(f"{CONVERSATIONS}/{case.conversation_id}", headers=case.member_auth).status_code
        == 404
    )


def test_a_send_that_waited_for_the_lock_finds_the_conversation_sealed(runtime, case):
    """A write that loaded the row before the deletion committed re-reads it under the lock
    and adds nothing to content the ledger has hashed."""
    member = sign_in(runtime, case.member).principal
    session = runtime.database.session()
    try:
        service = ConversationService(session, runtime)
        conversation = session.get(Conversation, uuid.UUID(case.conversation_id))
        session.commit()  # loaded before the deletion; SQLite releases its write lock here
        with runtime.database.transaction() as other:
            DeletionService(other, runtime).delete_own(member, conversation.id)
        service.lock_for_write(conversation)
        with pytest.raises(NotFound):
            service.require_open(conversation)
    finally:
        session.rollback()
        session.close()


def test_deletion_is_audited_and_both_chains_verify(client, runtime, case):
    assert delete(client, case).status_code == 202
    with runtime.database.transaction() as session:
        (entry,) = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "conversation.seal")
        ).all()
        record_id = session.scalars(select(ArchiveRecord.id)).one()
        assert audit.verify(session, runtime.keys.audit_mac).ok
    assert (entry.target_type, entry.target_id) == ("conversation", case.conversation_id)
    assert entry.subject_id == case.member.id
    assert entry.actor_id == case.member.id
    assert str(record_id) in entry.details
    for secret in (SUBJECT, BODY, REPLY, case.member.email):
        assert secret not in entry.details
    assert verify_ledger(runtime).ok
