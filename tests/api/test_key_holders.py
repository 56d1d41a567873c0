"""The last active holder of a role key keeps it; revoking needs the password again (issue 12,
item 6).

One clinician session could revoke every holder of the physician key, itself included: the key
was orphaned (the queue answered ``role_key_required``, a rotation could not start, ``keys
init`` refused), and everything sealed to it was lost. Now a revocation or a disable that would
leave no other active holder answers 409 ``last_key_holder`` and changes nothing.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from access_control.roles import Role
from medchat.models import Account, AccountStatus, AuditEntry, KeyRole, RoleKey, RoleKeyGrant
from tests.support.accounts import Person, bearer, login, make_staff
from tests.support.messaging import care_team
from tests.support.responses import error_code
from tests.support.rotation import grant
from tests.support.tampering import execute_sql

CLINICIAN = "/api/v1/clinician/colleagues"
COMPLIANCE = "/api/v1/compliance/colleagues"


def grants_of(runtime, account_id: uuid.UUID) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(
            select(func.count())
            .select_from(RoleKeyGrant)
            .where(RoleKeyGrant.account_id == account_id)
        )


def revoke(client, base: str, target: Person, auth: dict[str, str], password: str | None):
    body = {"password": password} if password is not None else None
    return client.delete(f"{base}/{target.id}/grant", json=body, headers=auth)


def test_the_last_holder_cannot_revoke_itself(client, runtime):
    team = care_team(runtime)
    doctor = bearer(login(client, runtime, team.clinician))

    refused = revoke(client, CLINICIAN, team.clinician, doctor, team.clinician.password)

    assert refused.status_code == 409
    assert error_code(refused) == "last_key_holder"
    assert refused.get_json()["error"]["message"] == (
        "This account is the last active holder of the physician key; removing it would lose "
        "the key and everything sealed to it. Grant the key to a colleague first."
    )
    assert grants_of(runtime, team.clinician.id) == 1
    assert client.get("/api/v1/clinician/queue", headers=doctor).status_code == 200


def test_a_holder_revokes_a_colleague_but_not_then_itself(client, runtime):
    team = care_team(runtime)
    colleague = make_staff(runtime, Role.CLINICIAN)
    grant(runtime, team.clinician, colleague)
    doctor = bearer(login(client, runtime, team.clinician))

    # Two holders: either may go, but not both.
    colleague_out = revoke(client, CLINICIAN, colleague, doctor, team.clinician.password)
    self_out = revoke(client, CLINICIAN, team.clinician, doctor, team.clinician.password)

    assert colleague_out.status_code == 204
    assert colleague_out.headers["Medchat-Rotation-Due"] == "physician"
    assert self_out.status_code == 409 and error_code(self_out) == "last_key_holder"
    # The active key and the successor the revocation made (``medchat.keys.successors``).
    assert grants_of(runtime, team.clinician.id) == 2


def test_revoking_needs_the_revokers_password_again(client, runtime):
    team = care_team(runtime)
    colleague = make_staff(runtime, Role.CLINICIAN)
    grant(runtime, team.clinician, colleague)
    doctor = bearer(login(client, runtime, team.clinician))

    without = revoke(client, CLINICIAN, colleague, doctor, None)
    wrong = revoke(client, CLINICIAN, colleague, doctor, "not-the-password-1")

    assert without.status_code == 422 and "password" in without.get_json()["error"]["details"]
    assert wrong.status_code == 401 and error_code(wrong) == "invalid_credentials"
    assert grants_of(runtime, colleague.id) == 1


def test_the_last_archive_key_holder_is_kept_too(client, runtime):
    team = care_team(runtime)
    officer = bearer(login(client, runtime, team.compliance))

    refused = revoke(client, COMPLIANCE, team.compliance, officer, team.compliance.password)

    assert refused.status_code == 409 and error_code(refused) == "last_key_holder"
    assert grants_of(runtime, team.compliance.id) == 1


def test_the_last_holder_cannot_be_disabled_until_a_colleague_holds_the_key(client, runtime):
    team = care_team(runtime)
    admin = bearer(login(client, runtime, make_staff(runtime, Role.ADMIN)))

    refused = client.post(f"/api/v1/admin/accounts/{team.clinician.id}/disable", headers=admin)

    assert refused.status_code == 409 and error_code(refused) == "last_key_holder"
    with runtime.database.transaction() as session:
        assert session.get(Account, team.clinician.id).status == AccountStatus.ACTIVE
    colleague = make_staff(runtime, Role.CLINICIAN)
    grant(runtime, team.clinician, colleague)
    disabled = client.post(f"/api/v1/admin/accounts/{team.clinician.id}/disable", headers=admin)
    assert disabled.status_code == 204
    # The colleague is now the last holder in turn.
    again = client.post(f"/api/v1/admin/accounts/{colleague.id}/disable", headers=admin)
    assert again.status_code == 409


def test_a_grant_planted_through_sql_does_not_stand_in_for_a_colleague(client, runtime):
    """A database writer copies the holder's grant onto a colleague, to make the holder look
    replaceable: the copy fails its row tag (and names the holder's key, not the colleague's)."""
    team = care_team(runtime)
    colleague = make_staff(runtime, Role.CLINICIAN)
    with runtime.database.transaction() as session:
        held = session.scalar(
            select(RoleKeyGrant)
            .join(RoleKey, RoleKey.id == RoleKeyGrant.role_key_id)
            .where(RoleKeyGrant.account_id == team.clinician.id, RoleKey.role == KeyRole.PHYSICIAN)
        )
        role_key_id, wrap, created_at = held.role_key_id, held.wrap, held.created_at
    execute_sql(
        runtime,
        "INSERT INTO role_key_grants (id, role_key_id, account_id, wrap, granted_by, created_at,"
        " row_tag) VALUES (:id, :role_key_id, :account_id, :wrap, NULL, :created_at, :tag)",
        id=uuid.uuid4(),
        role_key_id=role_key_id,
        account_id=colleague.id,
        wrap=wrap,
        created_at=created_at,
        tag=b"\x00" * 32,
    )
    admin = bearer(login(client, runtime, make_staff(runtime, Role.ADMIN)))

    refused = client.post(f"/api/v1/admin/accounts/{team.clinician.id}/disable", headers=admin)

    assert refused.status_code == 409 and error_code(refused) == "last_key_holder"
    with runtime.database.transaction() as session:
        assert session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "integrity.row_refused")
        )
        assert session.get(Account, team.clinician.id).status == AccountStatus.ACTIVE


def test_the_check_holds_the_roles_grant_lock_until_the_transaction_ends(runtime):
    """Two revocations racing must not each see the other as the remaining holder: the check
    takes the role's grant lock, which a rotation handing out the new key takes too."""
    if runtime.database.engine.dialect.name != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's; SQLite serialises every writer")
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from medchat.keys.holders import require_another_holder

    team = care_team(runtime)
    colleague = make_staff(runtime, Role.CLINICIAN)
    grant(runtime, team.clinician, colleague)
    with runtime.database.transaction() as first:
        require_another_holder(first, runtime.custody(first), colleague.id, ["physician"])
        with (
            pytest.raises(OperationalError, match="lock timeout"),
            runtime.database.transaction() as second,
        ):
            second.execute(text("SET LOCAL lock_timeout = '200ms'"))
            runtime.custody(second).hold_grant_lock("physician")
        # Another role's lock is free.
        with runtime.database.transaction() as third:
            third.execute(text("SET LOCAL lock_timeout = '200ms'"))
            runtime.custody(third).hold_grant_lock("archive")
