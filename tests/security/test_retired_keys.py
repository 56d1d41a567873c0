"""A retired personal key does not outlive what it was sealed to (issue 18 item 7).

Before: a reset or re-enrollment retired the old keypair but kept its row, sealed under the old
password, forever; the old password (known to someone, guessed, leaked) plus any later copy of
the database opened it. Now the row is deleted once no wrap and no grant is sealed to it: by
the reset itself, the re-enrollment, the re-wrap drain, and the daily retention run.

Each test takes the database as a thief would (SQL), and tries the old password on every
sealed private key in it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from access_control import crypto
from access_control.password_kdf import open_with_password
from access_control.roles import Role
from medchat import audit
from medchat.keys.custody import _PERSONAL_AAD
from medchat.keys.member_rewrap import RewrapQueue
from medchat.models import AuditEntry, PasswordResetToken, PersonalKey
from medchat.services.accounts import AccountService
from medchat.services.password_reset import PasswordResetService
from medchat.services.staff_reset import StaffResetService
from tests.support.accounts import init_role_keys, make_member, make_staff
from tests.support.conversations import read_bodies, start_conversation
from tests.support.retention import every_stored_value
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql

NEW_PASSWORD = "lichen-tundra-pelican-86"


@pytest.fixture
def app(make_app, tmp_path):
    return make_app(mail_url=f"file://{tmp_path / 'mail'}")


@pytest.fixture
def clinician(runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    init_role_keys(runtime, clinician, make_staff(runtime, Role.COMPLIANCE))
    return clinician


def stolen_keys(runtime, account_id) -> list[dict]:
    """The account's rows of ``personal_keys``, read with SQL as a database copy holds them."""
    table = PersonalKey.__table__
    with runtime.database.engine.connect() as connection:
        rows = connection.execute(select(table).where(table.c.account_id == account_id))
        return [dict(row._mapping) for row in rows]


def opens_with(row: dict, password: str) -> bool:
    aad = crypto.associated_data(_PERSONAL_AAD, row["account_id"], row["id"])
    try:
        open_with_password(row["private_key_ciphertext"], password, aad=aad)
    except crypto.DecryptionFailed:
        return False
    return True


def actions(runtime, action: str) -> list[AuditEntry]:
    with runtime.database.transaction() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def member_reset(runtime, member_id, password: str = NEW_PASSWORD) -> None:
    token = f"mcp_{uuid.uuid4().hex}"
    now = runtime.clock.now()
    with runtime.database.transaction() as session:
        session.add(
            PasswordResetToken(
                account_id=member_id,
                token_hash=crypto.token_hash(token),
                created_at=now,
                expires_at=now + timedelta(minutes=30),
            )
        )
    with runtime.database.transaction() as session:
        PasswordResetService(session, runtime).confirm(token, password, None)


def test_after_a_reset_and_its_rewrap_the_old_password_opens_nothing(runtime, clinician):
    member = make_member(runtime)
    started = start_conversation(
        runtime, sign_in(runtime, member).principal, subject="Knee", bodies=["It hurts"]
    )
    (old,) = stolen_keys(runtime, member.id)
    assert opens_with(old, member.password)  # the copy before: the old password opens it

    member_reset(runtime, member.id)
    with runtime.database.transaction() as session:
        drained = RewrapQueue(session, runtime).drain(sign_in(runtime, clinician).principal, 10)
    assert drained.rewrapped == 1

    copy = stolen_keys(runtime, member.id)
    assert [row["id"] for row in copy] != [old["id"]] and len(copy) == 1
    assert not any(opens_with(row, member.password) for row in copy)
    assert old["private_key_ciphertext"] not in every_stored_value(runtime)
    assert [e.target_id for e in actions(runtime, "key.personal_forget")] == [str(member.id)]
    # The member reads the history with the new password: nothing needed was deleted.
    member.password = NEW_PASSWORD
    principal = sign_in(runtime, member).principal
    assert read_bodies(runtime, principal, started.id) == ["It hurts"]


def test_a_re_enrolled_clinicians_old_key_goes_with_the_reset(runtime, clinician):
    admin = sign_in(runtime, make_staff(runtime, Role.ADMIN)).principal
    (old,) = stolen_keys(runtime, clinician.id)
    with runtime.database.transaction() as session:
        audit.set_context(session, audit.AuditContext(actor_id=admin.id, actor_role="admin"))
        token = StaffResetService(session, runtime).reset(admin, clinician.id)
    with runtime.database.transaction() as session:
        accounts = AccountService(session, runtime)
        accounts.begin_enrollment(token, NEW_PASSWORD)
        account = accounts.get(clinician.id)
        code = pyotp.TOTP(accounts.totp_secret(account)).at(runtime.clock.now())
        accounts.confirm_enrollment(token, code)

    copy = stolen_keys(runtime, clinician.id)
    assert len(copy) == 1 and copy[0]["id"] != old["id"]
    assert not any(opens_with(row, clinician.password) for row in copy)
    assert opens_with(copy[0], NEW_PASSWORD)


def test_a_retired_key_something_is_sealed_to_stays_until_nothing_is(runtime, clinician):
    member = make_member(runtime)
    start_conversation(runtime, sign_in(runtime, member).principal, subject=None, bodies=["q"])
    # A key change that leaves the member wrap sealed to the old key (no re-wrap queued yet).
    with runtime.database.transaction() as session:
        runtime.custody(session).create_personal_key(member.id, NEW_PASSWORD)
    from medchat.services.retired_keys import RetiredKeySweep

    sweep = RetiredKeySweep(runtime, batch_size=1)
    assert sweep.count_due() == 0 and sweep.run() == 0
    assert len(stolen_keys(runtime, member.id)) == 2

    # A current key with ``retired_at`` set through SQL is not the sweep's to delete either.
    execute_sql(
        runtime,
        "UPDATE personal_keys SET retired_at = created_at WHERE account_id = :a",
        a=member.id,
    )
    execute_sql(runtime, "DELETE FROM conversation_key_wraps WHERE holder = 'member'")
    assert sweep.count_due() == 1
    assert sweep.run() == 1  # the genuinely retired one, now that nothing names it
    (left,) = stolen_keys(runtime, member.id)
    assert opens_with(left, NEW_PASSWORD) and not opens_with(left, member.password)
    assert len(actions(runtime, "key.personal_forget_run")) == 1
