"""``POST /api/v1/admin/accounts/{id}/reset``: a staff member forgot their password or lost
their TOTP device (API.md "Admin", SECURITY-MODEL "Authentication" and key hierarchy 7, 11).

The admin gets an enrollment token and nothing else; the account can no longer sign in with
anything it had, its sessions and role-key grants are gone, the role key is marked for
rotation, it re-enrolls with a new keypair and a colleague re-grants the role key.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from sqlalchemy import func, select

from access_control import crypto
from access_control.roles import Role
from medchat.models import (
    Account,
    AuditEntry,
    EnrollmentToken,
    KeyRole,
    RecoveryCode,
    RoleKey,
    RoleKeyGrant,
)
from medchat.services.accounts import AccountService
from tests.support.accounts import (
    PASSWORDS,
    Person,
    bearer,
    code_for,
    login,
    make_member,
    make_staff,
)
from tests.support.console import console_login, post_form
from tests.support.messaging import asked, care_team, give_consent
from tests.support.responses import error_code

NEW_PASSWORD = "juniper-quartz-falcon-61"
QUEUE = "/api/v1/clinician/queue"


def reset_path(account_id) -> str:
    return f"/api/v1/admin/accounts/{account_id}/reset"


@pytest.fixture
def admin(runtime) -> Person:
    return make_staff(runtime, Role.ADMIN)


@pytest.fixture
def admin_auth(client, runtime, admin) -> dict[str, str]:
    return bearer(login(client, runtime, admin))


def sign_in_attempt(client, runtime, person: Person, password: str, secret: str | None):
    runtime.clock.advance(seconds=30)
    body = {"email": person.email, "password": password}
    if secret:
        body["totp_code"] = pyotp.TOTP(secret).at(runtime.clock.now())
    return client.post("/api/v1/auth/token", json=body)


def re_enroll(client, runtime, token: str, password: str = NEW_PASSWORD) -> str:
    start = client.post(
        "/api/v1/auth/enroll", json={"enrollment_token": token, "password": password}
    )
    assert start.status_code == 200, start.get_json()
    secret = parse_qs(urlparse(start.get_json()["provisioning_uri"]).query)["secret"][0]
    runtime.clock.advance(seconds=30)
    confirm = client.post(
        "/api/v1/auth/enroll/confirm",
        json={"enrollment_token": token, "totp_code": pyotp.TOTP(secret).at(runtime.clock.now())},
    )
    assert confirm.status_code == 200, confirm.get_json()
    return secret


def test_the_admin_gets_an_enrollment_token_and_nothing_else(client, runtime, admin_auth):
    clinician = make_staff(runtime, Role.CLINICIAN)

    response = client.post(reset_path(clinician.id), headers=admin_auth)

    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"enrollment_token"} and body["enrollment_token"].startswith("mce_")
    with runtime.database.transaction() as session:
        stored = session.scalars(
            select(EnrollmentToken.token_hash).where(EnrollmentToken.account_id == clinician.id)
        ).all()
    assert crypto.token_hash(body["enrollment_token"]) in stored
    assert body["enrollment_token"].encode() not in b"".join(stored)


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.COMPLIANCE, Role.ADMIN])
def test_after_a_reset_neither_the_old_password_nor_the_old_totp_signs_in(
    client, runtime, admin_auth, role
):
    person = make_staff(runtime, role)
    tokens = login(client, runtime, person)

    assert client.post(reset_path(person.id), headers=admin_auth).status_code == 201

    refused = sign_in_attempt(client, runtime, person, person.password, person.totp_secret)
    assert refused.status_code == 401 and error_code(refused) == "invalid_credentials"
    dead = client.post("/api/v1/auth/logout", headers=bearer(tokens))
    assert dead.status_code == 401 and error_code(dead) == "invalid_token"
    with runtime.database.transaction() as session:
        account = session.get(Account, person.id)
        assert account.status == "pending"
        assert account.password_hash is None and account.totp_secret_ciphertext is None
        assert account.totp_confirmed_at is None and account.totp_last_step is None
        codes = session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.account_id == person.id)
        )
        assert codes == 0


def test_a_reset_ends_the_console_session_too(client, runtime, app, admin_auth):
    team = care_team(runtime)
    console = app.test_client()
    console_login(console, runtime, team.clinician)
    assert console.get("/console/queue").status_code == 200

    client.post(reset_path(team.clinician.id), headers=admin_auth)

    page = console.get("/console/queue")
    assert page.status_code == 302 and "/console/login" in page.headers["Location"]
    refused = post_form(
        console,
        "/console/login",
        {"email": team.clinician.email, "password": team.clinician.password},
    )
    assert refused.status_code == 401


def test_a_reset_deletes_the_role_key_grants_and_marks_the_role_key_for_rotation(
    client, runtime, admin_auth
):
    team = care_team(runtime)

    client.post(reset_path(team.clinician.id), headers=admin_auth)
    client.post(reset_path(team.compliance.id), headers=admin_auth)

    with runtime.database.transaction() as session:
        grants = session.scalar(select(func.count()).select_from(RoleKeyGrant))
        keys = {key.role: key for key in session.scalars(select(RoleKey))}
        entries = list(
            session.scalars(select(AuditEntry).where(AuditEntry.action == "account.reset"))
        )
    assert grants == 0
    for role in (KeyRole.PHYSICIAN, KeyRole.ARCHIVE):
        assert keys[role].rotation_due_at == runtime.clock.now()
        assert keys[role].rotation_reason == "staff_reset"
    assert [json.loads(e.details)["rotation_due"] for e in entries] == [["physician"], ["archive"]]


def test_re_enrollment_gives_a_new_keypair_and_a_colleague_re_grants_the_role_key(
    client, runtime, admin_auth
):
    team = care_team(runtime)
    colleague = make_staff(runtime, Role.CLINICIAN, last_name="Okafor")
    holder_auth = bearer(login(client, runtime, team.clinician))
    granted = client.post(f"/api/v1/clinician/colleagues/{colleague.id}/grant", headers=holder_auth)
    assert granted.status_code == 200
    member = make_member(runtime)
    member_tokens = login(client, runtime, member)
    give_consent(client, member_tokens)
    conversation_id = asked(client, member_tokens, "My ankle is swollen.")
    with runtime.database.transaction() as session:
        old_key = runtime.custody(session).personal_key(colleague.id)

    token = client.post(reset_path(colleague.id), headers=admin_auth).get_json()["enrollment_token"]
    secret = re_enroll(client, runtime, token)

    with runtime.database.transaction() as session:
        new_key = runtime.custody(session).verified_personal_key(colleague.id)
    assert new_key.key_id != old_key.key_id
    again = Person(colleague.id, colleague.email, NEW_PASSWORD, Role.CLINICIAN, secret)
    old_code = sign_in_attempt(client, runtime, again, NEW_PASSWORD, colleague.totp_secret)
    assert old_code.status_code == 401 and error_code(old_code) == "invalid_mfa_code"
    without_key = client.get(QUEUE, headers=bearer(login(client, runtime, again)))
    assert without_key.status_code == 403 and error_code(without_key) == "role_key_required"

    regrant = client.post(f"/api/v1/clinician/colleagues/{colleague.id}/grant", headers=holder_auth)

    assert regrant.status_code == 200
    auth = bearer(login(client, runtime, again))
    messages = client.get(
        f"/api/v1/clinician/conversations/{conversation_id}/messages", headers=auth
    )
    assert messages.status_code == 200
    assert [m["body"] for m in messages.get_json()["items"]] == ["My ankle is swollen."]


def test_an_earlier_enrollment_token_dies_with_the_reset(client, runtime, admin_auth):
    created = client.post(
        "/api/v1/admin/accounts",
        json={
            "email": "new.doctor@clinic.example.org",
            "role": "clinician",
            "first_name": "Ines",
            "last_name": "Moreau",
        },
        headers=admin_auth,
    ).get_json()

    reset = client.post(reset_path(created["id"]), headers=admin_auth).get_json()

    stale = client.post(
        "/api/v1/auth/enroll",
        json={"enrollment_token": created["enrollment_token"], "password": NEW_PASSWORD},
    )
    assert stale.status_code == 401 and error_code(stale) == "invalid_enrollment_token"
    re_enroll(client, runtime, reset["enrollment_token"])


def test_members_disabled_accounts_and_the_admin_themself_are_refused(
    client, runtime, admin, admin_auth
):
    member = make_member(runtime)
    disabled = make_staff(runtime, Role.CLINICIAN)
    with runtime.database.transaction() as session:
        AccountService(session, runtime).disable(disabled.id)

    answers = {
        "member": client.post(reset_path(member.id), headers=admin_auth),
        "disabled": client.post(reset_path(disabled.id), headers=admin_auth),
        "self": client.post(reset_path(admin.id), headers=admin_auth),
    }

    for name, response in answers.items():
        assert response.status_code == 409, name
        assert error_code(response) == "conflict", name
    member_login = sign_in_attempt(client, runtime, member, member.password, None)
    assert member_login.status_code == 200
    unknown = client.post(reset_path("00000000-0000-4000-8000-000000000000"), headers=admin_auth)
    assert unknown.status_code == 404


def test_only_admins_reset_accounts(client, runtime):
    team = care_team(runtime)
    auth = bearer(login(client, runtime, team.clinician))

    response = client.post(reset_path(team.compliance.id), headers=auth)

    assert response.status_code == 403 and error_code(response) == "forbidden"


def test_the_reset_is_audited_without_secrets(client, runtime, admin, admin_auth):
    clinician = make_staff(runtime, Role.CLINICIAN)

    token = client.post(reset_path(clinician.id), headers=admin_auth).get_json()["enrollment_token"]

    with runtime.database.transaction() as session:
        (entry,) = session.scalars(select(AuditEntry).where(AuditEntry.action == "account.reset"))
    assert (entry.actor_id, entry.target_id) == (admin.id, str(clinician.id))
    assert json.loads(entry.details) == {
        "role": "clinician",
        "grants_revoked": 0,
        "rotation_due": [],
    }
    for secret in (token, PASSWORDS[Role.CLINICIAN], clinician.email, code_for(clinician, runtime)):
        assert secret not in entry.details
