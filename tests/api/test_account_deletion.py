"""A member erases their account (``POST /api/v1/me/deletion``; docs/data-rights.md
"Erasure").

After 202 ``{"status": "deleted"}``: every live conversation is sealed into the archive (and
compliance still finds it by the address), every session is dead, personal keys and wraps are
gone, and no stored byte names the person (checked on the dump, in every usual encoding);
the address registers again and the old password signs in nowhere. A wrong password is 401
``invalid_credentials`` and changes nothing. Staff cannot use the route.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from access_control.roles import Role
from medchat import audit
from medchat.models import (
    Account,
    ArchiveRecord,
    AuditEntry,
    AuthToken,
    Consent,
    Conversation,
    ConversationKeyWrap,
    Holder,
    IdempotencyRecord,
    MemberProfile,
    PersonalKey,
    RecoveryCode,
    RewrapRequest,
)
from tests.support.accounts import REGISTRATION, bearer, login, make_member, make_staff
from tests.support.archive import archive_colleague, verify_ledger
from tests.support.compliance import JUSTIFICATION
from tests.support.dump import database_dump
from tests.support.leaks import found_in
from tests.support.messaging import CONVERSATIONS, asked, count, give_consent
from tests.support.rights import (
    ANSWER,
    CLINICIAN,
    DELETION,
    ME,
    QUESTION,
    SUBJECT,
    a_member_with_history,
)

ARCHIVE = "/api/v1/compliance/archive"
RETRIEVALS = "/api/v1/compliance/retrievals"
#: What registration stored about the member in ``a_member_with_history`` (make_member).
PERSONAL = {
    "last name": "Durand",
    "phone": "+33 6 12 34 56 78",
    "insurance number": "FR-0000-1",
}


@pytest.fixture
def history(client, runtime):
    return a_member_with_history(client, runtime)


def delete_account(client, auth, password):
    return client.post(DELETION, json={"password": password}, headers=auth)


def deleted(client, history):
    response = delete_account(client, history.auth, history.member.password)
    assert response.status_code == 202, response.get_json()
    return response


def rows(runtime, model, **where):
    with runtime.database.transaction() as session:
        statement = select(func.count()).select_from(model)
        for column, value in where.items():
            statement = statement.where(getattr(model, column) == value)
        return session.scalar(statement)


def test_deletion_answers_202_deleted(client, history):
    response = deleted(client, history)
    assert response.get_json() == {"status": "deleted"}
    assert response.headers["Cache-Control"] == "no-store"


def test_every_live_conversation_is_sealed_and_leaves_every_view(client, runtime, history):
    deleted(client, history)
    with runtime.database.transaction() as session:
        statuses = dict(
            session.execute(
                select(Conversation.id, Conversation.status).where(
                    Conversation.member_id == history.member.id
                )
            ).all()
        )
        reasons = set(session.scalars(select(ArchiveRecord.reason)))
    assert {str(k): v for k, v in statuses.items()} == {
        history.answered_id: "sealed",
        history.closed_id: "sealed",
    }
    assert reasons == {"member_request"}
    for status in ("open", "answered", "closed"):
        queue = client.get(f"{CLINICIAN}/queue?status={status}", headers=history.doctor_auth)
        text = queue.get_data(as_text=True)
        assert history.answered_id not in text and history.closed_id not in text
    case = client.get(
        f"{CLINICIAN}/conversations/{history.answered_id}", headers=history.doctor_auth
    )
    assert case.status_code == 404
    # The other member's conversation is untouched.
    other = client.get(f"{CONVERSATIONS}/{history.others_id}", headers=history.other_auth)
    assert other.status_code == 200
    assert verify_ledger(runtime).ok


def test_only_the_archive_wraps_remain(client, runtime, history):
    deleted(client, history)
    with runtime.database.transaction() as session:
        holders = set(
            session.scalars(
                select(ConversationKeyWrap.holder)
                .join(Conversation, Conversation.id == ConversationKeyWrap.conversation_id)
                .where(Conversation.member_id == history.member.id)
            )
        )
    assert holders == {Holder.ARCHIVE}
    assert rows(runtime, PersonalKey, account_id=history.member.id) == 0


def test_every_session_ends_and_the_old_password_signs_in_nowhere(client, runtime, history):
    second_device = bearer(login(client, runtime, history.member))
    deleted(client, history)
    for auth in (history.auth, second_device):
        response = client.get(ME, headers=auth)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "invalid_token"
    refresh = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": history.tokens["refresh_token"]}
    )
    assert refresh.status_code == 401
    token = client.post(
        "/api/v1/auth/token",
        json={"email": history.member.email, "password": history.member.password},
    )
    assert token.status_code == 401
    assert token.get_json()["error"]["code"] == "invalid_credentials"
    assert rows(runtime, AuthToken, account_id=history.member.id) == 0


def test_nothing_stored_names_the_person(client, runtime, history):
    deleted(client, history)
    dump = database_dump(runtime.database.engine)
    named = {**PERSONAL, "email": history.member.email, "first name": "Camille"}
    assert found_in(dump, named) == []
    with runtime.database.transaction() as session:
        account = session.get(Account, history.member.id)
        assert account.status == "deleted"
        assert account.display_name is None and account.first_name_ciphertext == b""
        assert account.email_ciphertext == b"" and account.last_name_ciphertext == b""
        assert account.password_hash is None and account.totp_secret_ciphertext is None
        assert account.email_index != runtime.profiles.email_index(history.member.email)
        assert session.get(MemberProfile, history.member.id) is None
    # The first name and birth date were in clear: no row of the member's holds them now.
    with runtime.database.engine.connect() as connection:
        profile_rows = connection.exec_driver_sql("SELECT COUNT(*) FROM member_profiles").scalar()
    assert profile_rows == 1  # the other member's


def test_the_consent_history_is_kept_and_the_current_grant_ends(client, runtime, history):
    deleted(client, history)
    with runtime.database.transaction() as session:
        consents = session.scalars(
            select(Consent).where(Consent.account_id == history.member.id)
        ).all()
    assert [(c.version, c.withdrawn_at is not None) for c in consents] == [("2026-01", True)]


def test_compliance_still_finds_the_sealed_records_by_address(client, runtime, history):
    deleted(client, history)
    officer = bearer(login(client, runtime, history.team.compliance))
    found = client.post(
        f"{ARCHIVE}/search", json={"member_email": history.member.email}, headers=officer
    )
    assert found.status_code == 200
    ids = {item["conversation_id"] for item in found.get_json()["items"]}
    assert ids == {history.answered_id, history.closed_id}
    # And can still open one, with four eyes: the archive wrap is what deletion keeps.
    record = next(
        i for i in found.get_json()["items"] if i["conversation_id"] == history.answered_id
    )
    asked_for = client.post(
        f"{ARCHIVE}/{record['id']}/retrievals",
        json={"justification": JUSTIFICATION},
        headers=officer,
    )
    assert asked_for.status_code == 201
    retrieval = asked_for.get_json()["id"]
    second = bearer(login(client, runtime, archive_colleague(runtime, history.team.compliance)))
    assert client.post(f"{RETRIEVALS}/{retrieval}/approve", headers=second).status_code == 200
    opened = client.get(f"{RETRIEVALS}/{retrieval}/content", headers=officer)
    assert opened.status_code == 200, opened.get_json()
    assert QUESTION in opened.get_data(as_text=True) and ANSWER in opened.get_data(as_text=True)


def test_the_address_can_register_again_as_a_new_account(client, runtime, history):
    deleted(client, history)
    body = {**REGISTRATION, "email": history.member.email}
    assert client.post("/api/v1/auth/register", json=body).status_code == 202
    token = client.post(
        "/api/v1/auth/token", json={"email": history.member.email, "password": body["password"]}
    )
    assert token.status_code == 200
    me = client.get(ME, headers=bearer(token.get_json())).get_json()
    assert me["id"] != str(history.member.id) and me["email"] == history.member.email
    # The new account starts empty: none of the old conversations are its.
    listed = client.get(CONVERSATIONS, headers=bearer(token.get_json())).get_json()
    assert listed["items"] == []


def test_a_wrong_password_is_401_and_changes_nothing(client, runtime, history):
    before = client.get(ME, headers=history.auth).get_json()
    response = delete_account(client, history.auth, "not-the-password-at-all")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_credentials"
    assert client.get(ME, headers=history.auth).get_json() == before
    listed = client.get(CONVERSATIONS, headers=history.auth).get_json()["items"]
    assert {item["id"] for item in listed} == {history.answered_id, history.closed_id}
    assert rows(runtime, ArchiveRecord) == 0
    with runtime.database.transaction() as session:
        (failure,) = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "account.delete")
        ).all()
    assert failure.outcome == "failure" and failure.subject_id == history.member.id


def test_wrong_passwords_count_toward_the_sign_in_lockout(client, runtime, history):
    for _ in range(5):
        assert delete_account(client, history.auth, "wrong-password-xyz").status_code == 401
    locked = delete_account(client, history.auth, history.member.password)
    assert locked.status_code == 429
    assert "Retry-After" in locked.headers
    # The same account bucket as sign-in: the right password at the token endpoint waits too.
    token = client.post(
        "/api/v1/auth/token",
        json={"email": history.member.email, "password": history.member.password},
    )
    assert token.status_code == 429
    assert rows(runtime, ArchiveRecord) == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"password": ""}, {"password": 42}, {"password": "x", "confirm": True}],
)
def test_a_malformed_request_is_422_and_changes_nothing(client, runtime, history, body):
    response = client.post(DELETION, json=body, headers=history.auth)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"
    assert client.get(ME, headers=history.auth).status_code == 200
    assert rows(runtime, ArchiveRecord) == 0


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.COMPLIANCE, Role.ADMIN])
def test_staff_cannot_delete_an_account_here(client, runtime, history, role):
    person = {
        Role.CLINICIAN: history.team.clinician,
        Role.COMPLIANCE: history.team.compliance,
    }.get(role) or make_staff(runtime, role)
    response = delete_account(client, bearer(login(client, runtime, person)), person.password)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
    with runtime.database.transaction() as session:
        assert session.get(Account, person.id).status == "active"
    assert client.post(DELETION, json={"password": "x"}).status_code == 401


def test_every_step_is_audited_without_personal_data_and_the_chains_verify(
    client, runtime, history
):
    deleted(client, history)
    with runtime.database.transaction() as session:
        entries = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.subject_id == history.member.id)
            .order_by(AuditEntry.seq.desc())
            .limit(4)
        ).all()
        assert audit.verify(session, runtime.keys.audit_mac).ok
    newest_first = [e.action for e in entries]
    assert newest_first == [
        "account.delete",
        "consent.withdraw",
        "conversation.seal",
        "conversation.seal",
    ]
    assert json.loads(entries[0].details) == {"conversations_sealed": 2}
    for entry in entries:
        assert entry.actor_id == history.member.id
        for secret in (history.member.email, "Durand", SUBJECT, QUESTION, ANSWER):
            assert secret not in entry.details
    assert verify_ledger(runtime).ok


def test_a_deleted_account_cannot_be_disabled_back_to_life(client, runtime, history):
    deleted(client, history)
    admin = bearer(login(client, runtime, make_staff(runtime, Role.ADMIN)))
    response = client.post(f"/api/v1/admin/accounts/{history.member.id}/disable", headers=admin)
    assert response.status_code == 409
    with runtime.database.transaction() as session:
        assert session.get(Account, history.member.id).status == "deleted"


def test_a_member_with_two_factor_and_no_conversations_is_erased_too(client, runtime):
    member = make_member(runtime, totp=True)
    auth = bearer(login(client, runtime, member))
    assert rows(runtime, RecoveryCode, account_id=member.id) > 0
    response = delete_account(client, auth, member.password)
    assert response.status_code == 202
    assert rows(runtime, RecoveryCode, account_id=member.id) == 0
    assert rows(runtime, IdempotencyRecord, account_id=member.id) == 0
    with runtime.database.transaction() as session:
        account = session.get(Account, member.id)
        assert account.totp_confirmed_at is None and account.totp_last_step is None


def test_a_history_waiting_for_its_rewrap_is_sealed_too(make_app, tmp_path):
    from tests.support.reset_history import a_member_after_reset as after_reset

    before = after_reset(make_app(mail_url=f"file://{tmp_path}"), tmp_path)
    client, runtime = before.client, before.runtime
    tokens = login(client, runtime, before.member)
    give_consent(client, tokens)
    fresh = asked(client, tokens, "A question after the reset.")
    response = delete_account(client, bearer(tokens), before.member.password)
    assert response.status_code == 202, response.get_json()
    with runtime.database.transaction() as session:
        statuses = set(
            session.scalars(
                select(Conversation.status).where(Conversation.member_id == before.member.id)
            )
        )
        sealed = {str(c) for c in session.scalars(select(ArchiveRecord.conversation_id))}
    assert statuses == {"sealed"}
    assert sealed == {*before.histories, fresh}
    assert rows(runtime, PersonalKey, account_id=before.member.id) == 0
    assert count(runtime, RewrapRequest) == 0
