"""The attacks of the database-writer review, each as it was made (issue: planted rows).

The attacker has the application's own database login, no key directory, and a member account
they registered themselves. They plant *instructions*, not keys: the server would then
honestly seal real keys to a genuine, correctly tagged key of the attacker's. The class test
is ``test_planted_rows.py``; these are the reported instances, in plain SQL that runs on any
version of the schema.
"""

from __future__ import annotations

import contextlib
import uuid

import pytest
from sqlalchemy import select

from access_control import crypto, hybrid_kem
from access_control.roles import Role
from medchat.errors import MedchatError
from medchat.keys.member_rewrap import RewrapQueue
from medchat.models import (
    Account,
    Conversation,
    ConversationKeyWrap,
    KeyRole,
    PersonalKey,
    RoleKey,
    RoleKeyGrant,
    RoleKeyStatus,
)
from medchat.services.password_reset import PasswordResetService
from tests.support.accounts import make_member, make_staff
from tests.support.conversations import start_conversation
from tests.support.messaging import care_team
from tests.support.rotation import rotate
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql, sealed_to


@pytest.fixture
def team(runtime):
    return care_team(runtime)


def _current_key(runtime, account_id) -> PersonalKey:
    with runtime.database.transaction() as session:
        row = runtime.custody(session).personal_key(account_id)
        assert row is not None
        session.expunge(row)
        return row


def test_a_planted_rewrap_request_seals_nothing_to_the_attacker(runtime, team):
    victim = make_member(runtime)
    attacker = make_member(runtime)
    conversation = start_conversation(
        runtime, sign_in(runtime, victim).principal, subject="Private", bodies=["symptoms"]
    ).id
    attacker_key = _current_key(runtime, attacker.id)
    values = {
        "id": uuid.uuid4(),
        "conversation_id": conversation,
        "member_id": attacker.id,
        "personal_key_id": attacker_key.id,
        "created_at": runtime.clock.now(),
    }
    execute_sql(
        runtime,
        "INSERT INTO rewrap_requests (id, conversation_id, member_id, personal_key_id,"
        " created_at) VALUES (:id, :conversation_id, :member_id, :personal_key_id, :created_at)",
        **values,
    )
    clinician = sign_in(runtime, team.clinician).principal
    with runtime.database.transaction() as session:
        RewrapQueue(session, runtime).drain(clinician, 10)
    assert sealed_to(runtime, attacker_key.key_id) == []
    with runtime.database.transaction() as session:
        assert RewrapQueue(session, runtime).pending() == 0  # dropped, never acted on


def test_a_role_flip_and_a_planted_grant_get_no_key_from_a_rotation(runtime, team):
    attacker = make_member(runtime)
    attacker_key = _current_key(runtime, attacker.id)
    with runtime.database.transaction() as session:
        physician = session.scalars(
            select(RoleKey).where(
                RoleKey.role == KeyRole.PHYSICIAN, RoleKey.status == RoleKeyStatus.ACTIVE
            )
        ).one()
        session.expunge(physician)
    execute_sql(runtime, "UPDATE accounts SET role = 'clinician' WHERE id = :id", id=attacker.id)
    # A wrap whose header names the attacker's key: the rotation reads it as "sealed to the
    # holder's current key" and would seal the new role key to that key.
    junk = hybrid_kem.wrap_key(
        attacker_key.public_key,
        crypto.generate_key(),
        recipient_id=attacker.id,
        context_id=physician.id,
        purpose=hybrid_kem.PURPOSE_ROLE_KEY,
    )
    execute_sql(
        runtime,
        "INSERT INTO role_key_grants (id, role_key_id, account_id, wrap, granted_by, created_at)"
        " VALUES (:id, :role_key_id, :account_id, :wrap, NULL, :created_at)",
        id=uuid.uuid4(),
        role_key_id=physician.id,
        account_id=attacker.id,
        wrap=junk,
        created_at=runtime.clock.now(),
    )
    with contextlib.suppress(MedchatError):  # refused outright is as good as skipped
        rotate(runtime, team.clinician)
    with runtime.database.transaction() as session:
        holders = session.scalars(
            select(RoleKeyGrant.account_id)
            .join(RoleKey, RoleKey.id == RoleKeyGrant.role_key_id)
            .where(RoleKey.version > physician.version)
        ).all()
    assert attacker.id not in holders
    with runtime.database.transaction() as session:
        to_attacker = session.scalars(
            select(RoleKeyGrant.role_key_id).where(RoleKeyGrant.account_id == attacker.id)
        ).all()
    assert set(to_attacker) <= {physician.id}  # the planted row itself, if it is still there


def test_a_planted_reset_token_does_not_reset_the_victim(runtime, team):
    victim = make_member(runtime)
    token = "attacker-chose-this-reset-token"
    now = runtime.clock.now()
    execute_sql(
        runtime,
        "INSERT INTO password_reset_tokens (id, account_id, token_hash, created_at, expires_at,"
        " used_at) VALUES (:id, :account_id, :token_hash, :created_at, :expires_at, NULL)",
        id=uuid.uuid4(),
        account_id=victim.id,
        token_hash=crypto.token_hash(token),
        created_at=now,
        expires_at=now.replace(year=now.year + 1),
    )
    with runtime.database.engine.connect() as connection:
        before = connection.execute(
            select(Account.password_hash).where(Account.id == victim.id)
        ).scalar_one()
    with pytest.raises(MedchatError), runtime.database.transaction() as session:
        PasswordResetService(session, runtime).confirm(token, "a brand new passphrase 1984!", None)
    with runtime.database.engine.connect() as connection:
        after = connection.execute(
            select(Account.password_hash).where(Account.id == victim.id)
        ).scalar_one()
    assert after == before
    sign_in(runtime, victim)  # the victim's own password still works


def test_a_planted_staff_session_row_signs_nobody_in(client, runtime, team):
    """An access-token row naming a clinician, past 2FA, with a token hash the attacker
    chose: the attacker's bearer token gets nothing."""
    token = "mcc_" + "A" * 43
    now = runtime.clock.now()
    execute_sql(
        runtime,
        "INSERT INTO auth_tokens (id, account_id, family_id, kind, token_hash, mfa_verified,"
        " created_at, expires_at, family_expires_at, last_used_at, used_at, sealed_keys)"
        " VALUES (:id, :account_id, :family_id, 'access', :token_hash, :mfa, :created_at,"
        " :expires_at, :expires_at, NULL, NULL, NULL)",
        id=uuid.uuid4(),
        account_id=team.clinician.id,
        family_id=uuid.uuid4(),
        token_hash=crypto.token_hash(token),
        mfa=True,
        created_at=now,
        expires_at=now.replace(year=now.year + 1),
    )
    response = client.get("/api/v1/clinician/queue", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (401, 409), response.get_json()
    assert response.status_code != 200


def test_a_planted_admin_role_reaches_no_admin_route(client, runtime, team):
    from tests.support.accounts import bearer, login

    attacker = make_member(runtime)
    tokens = login(client, runtime, attacker)
    execute_sql(runtime, "UPDATE accounts SET role = 'admin' WHERE id = :id", id=attacker.id)
    response = client.get("/api/v1/admin/audit", headers=bearer(tokens))
    assert response.status_code in (401, 403, 409)
    assert response.status_code < 500


def test_planted_rows_leave_legitimate_work_whole(runtime, team):
    """Nothing legitimate is lost: a genuine reset's re-wrap still happens beside a planted one."""
    victim = make_member(runtime)
    conversation = start_conversation(
        runtime, sign_in(runtime, victim).principal, subject="Private", bodies=["symptoms"]
    ).id
    with runtime.database.transaction() as session:
        PasswordResetService(session, runtime).request(victim.email)
    colleague = make_staff(runtime, Role.CLINICIAN)
    execute_sql(
        runtime,
        "INSERT INTO rewrap_requests (id, conversation_id, member_id, personal_key_id,"
        " created_at) VALUES (:id, :conversation_id, :member_id, :personal_key_id, :created_at)",
        id=uuid.uuid4(),
        conversation_id=conversation,
        member_id=colleague.id,
        personal_key_id=_current_key(runtime, colleague.id).id,
        created_at=runtime.clock.now(),
    )
    with runtime.database.transaction() as session:
        key = runtime.custody(session).personal_key(victim.id)
        RewrapQueue(session, runtime).enqueue(victim.id, key)
    clinician = sign_in(runtime, team.clinician).principal
    with runtime.database.transaction() as session:
        RewrapQueue(session, runtime).drain(clinician, 10)
    with runtime.database.transaction() as session:
        wraps = session.scalars(
            select(ConversationKeyWrap.recipient_key_id).where(
                ConversationKeyWrap.conversation_id == conversation,
                ConversationKeyWrap.holder == "member",
            )
        ).all()
        assert session.get(Conversation, conversation) is not None
    assert wraps == [_current_key(runtime, victim.id).key_id]


def test_a_planted_idempotency_record_replays_nobody_elses_conversation(client, runtime, team):
    """The attacker can compute their own request MAC (their password opens their key), so a
    record naming a victim's conversation as "what this key created" is well formed but for
    its row tag; replaying it would answer with the victim's conversation."""
    from medchat.services.idempotency import IdempotencyService
    from medchat.services.member_conversations import START_SCOPE
    from tests.support.accounts import bearer, login
    from tests.support.messaging import ask, give_consent

    victim = make_member(runtime)
    victim_tokens = login(client, runtime, victim)
    give_consent(client, victim_tokens)
    secret = "CanaryVictimQuestion about a lump"
    created = ask(client, victim_tokens, secret, subject="CanaryVictimSubject")
    victim_conversation = uuid.UUID(created.get_json()["id"])

    attacker = make_member(runtime)
    attacker_tokens = login(client, runtime, attacker)
    give_consent(client, attacker_tokens)
    payload = {"subject": None, "body": "hello"}
    principal = sign_in(runtime, attacker).principal
    with runtime.database.transaction() as session:
        mac = IdempotencyService(session, runtime).request_mac(principal, START_SCOPE, payload)
    execute_sql(
        runtime,
        "INSERT INTO idempotency_records (id, account_id, key, scope, request_hash,"
        " resource_id, created_at) VALUES (:id, :account_id, 'replay-me', :scope, :mac,"
        " :resource_id, :created_at)",
        id=uuid.uuid4(),
        account_id=attacker.id,
        scope=START_SCOPE,
        mac=mac,
        resource_id=victim_conversation,
        created_at=runtime.clock.now(),
    )
    headers = dict(bearer(attacker_tokens), **{"Idempotency-Key": "replay-me"})
    response = client.post(
        "/api/v1/conversations",
        json={"body": "hello", "emergency_notice": "2026-12"},
        headers=headers,
    )
    text = response.get_data(as_text=True)
    assert "CanaryVictim" not in text
    assert str(victim_conversation) not in text
    assert response.status_code == 409, text[:300]


def test_a_revoked_grant_put_back_from_an_earlier_copy_gets_no_new_key(runtime, team):
    """A rollback, not a forgery: the grant row the server tagged before the revocation is
    restored whole (its tag verifies). The audit trail, which the service's login cannot
    rewrite, records the revocation after it, so the rotation hands the new key elsewhere."""
    from tests.support.rotation import grant, revoke_and_put_back

    colleague = make_staff(runtime, Role.CLINICIAN)
    grant(runtime, team.clinician, colleague)
    revoke_and_put_back(runtime, team.clinician, colleague)
    result = rotate(runtime, team.clinician)
    assert result.retired
    with runtime.database.transaction() as session:
        held = session.scalars(
            select(RoleKey.version)
            .join(RoleKeyGrant, RoleKeyGrant.role_key_id == RoleKey.id)
            .where(RoleKeyGrant.account_id == colleague.id)
        ).all()
    assert held == []


def test_a_tampered_row_is_a_clear_409_and_an_audit_entry_never_a_500(client, runtime, team):
    from medchat.models import AuditEntry
    from tests.support.accounts import bearer, login

    member = make_member(runtime)
    tokens = login(client, runtime, member)
    execute_sql(runtime, "UPDATE accounts SET status = 'pending' WHERE id = :id", id=member.id)
    for response in (
        client.get("/api/v1/conversations", headers=bearer(tokens)),
        client.post(
            "/api/v1/auth/token", json={"email": member.email, "password": member.password}
        ),
    ):
        assert response.status_code == 409, response.get_data(as_text=True)[:300]
        assert response.get_json()["error"]["code"] == "row_integrity_failed"
        assert "Traceback" not in response.get_data(as_text=True)
    with runtime.database.transaction() as session:
        refused = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "integrity.row_refused")
        ).all()
    assert {(entry.target_type, entry.target_id) for entry in refused} == {
        ("accounts", str(member.id))
    }
    assert all(entry.outcome == "denied" for entry in refused)
