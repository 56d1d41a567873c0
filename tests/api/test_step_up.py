"""Step-up before changing what signs an account in, notices by mail, the way back after a lost
authenticator (issue 12, item 1).

A stolen access token used to turn TOTP on with the thief's seed, after which the real
member's sign-in and reset both asked for a code only the thief had. Now starting TOTP, turning
it off and changing the password need the password in the same request; each change is mailed
to the account; a member who lost their authenticator gets back in with recovery codes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat.models import Account, AuditEntry
from tests.support.accounts import Person, bearer, login, make_member, make_staff
from tests.support.mailbox import delivered
from tests.support.responses import error_code

AUTH = "/api/v1/auth"
WRONG_PASSWORD = "not-the-password-1"


@pytest.fixture
def mail_dir(tmp_path):
    return tmp_path / "mail"


@pytest.fixture
def app(make_app, mail_dir):
    return make_app(mail_url=f"file://{mail_dir}")


def subjects(runtime, mail_dir, person: Person) -> list[str]:
    return [m["Subject"] for m, _ in delivered(runtime, mail_dir) if m["To"] == person.email]


def stored_account(runtime, person: Person) -> Account:
    with runtime.database.transaction() as session:
        account = session.get(Account, person.id)
        session.expunge(account)
        return account


def audited(runtime, action: str) -> list[tuple[str, str]]:
    with runtime.database.transaction() as session:
        return [
            (e.action, e.outcome)
            for e in session.scalars(select(AuditEntry).where(AuditEntry.action == action))
        ]


def turn_totp_on(client, runtime, person: Person, tokens: dict[str, Any]) -> list[str]:
    """Enroll through the API (password, then the first code); returns the recovery codes."""
    started = client.post(
        f"{AUTH}/mfa/enroll", json={"password": person.password}, headers=bearer(tokens)
    )
    assert started.status_code == 200, started.get_json()
    uri = started.get_json()["provisioning_uri"]
    person.totp_secret = parse_qs(urlparse(uri).query)["secret"][0]
    confirmed = client.post(
        f"{AUTH}/mfa/confirm",
        json={"totp_code": pyotp.TOTP(person.totp_secret).at(runtime.clock.now())},
        headers=bearer(tokens),
    )
    assert confirmed.status_code == 200, confirmed.get_json()
    return confirmed.get_json()["recovery_codes"]  # type: ignore[no-any-return]


def test_a_stolen_access_token_alone_cannot_turn_on_a_second_factor(client, runtime):
    member = make_member(runtime)
    stolen = bearer(login(client, runtime, member))

    without = client.post(f"{AUTH}/mfa/enroll", headers=stolen)
    wrong = client.post(f"{AUTH}/mfa/enroll", json={"password": WRONG_PASSWORD}, headers=stolen)

    assert without.status_code == 422
    assert "password" in without.get_json()["error"]["details"]
    assert wrong.status_code == 401 and error_code(wrong) == "invalid_credentials"
    assert stored_account(runtime, member).totp_secret_ciphertext is None
    assert ("auth.mfa_start", "failure") in audited(runtime, "auth.mfa_start")
    # The member still signs in, and resets, with the password alone.
    again = client.post(f"{AUTH}/token", json={"email": member.email, "password": member.password})
    assert again.status_code == 200


def test_turning_a_second_factor_on_is_mailed_to_the_account(client, runtime, mail_dir):
    member = make_member(runtime)
    turn_totp_on(client, runtime, member, login(client, runtime, member))

    assert subjects(runtime, mail_dir, member) == ["Two-factor sign-in was turned on"]
    message, raw = delivered(runtime, mail_dir)[-1]
    assert "Hello Camille," in message.get_content()
    assert member.totp_secret and member.totp_secret not in raw.decode()


def test_a_password_change_needs_the_current_password_and_is_mailed(client, runtime, mail_dir):
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    new = {"current_password": WRONG_PASSWORD, "new_password": "orchid-tundra-pylon-88"}

    refused = client.post(f"{AUTH}/password", json=new, headers=bearer(tokens))
    assert refused.status_code == 401 and subjects(runtime, mail_dir, member) == []
    changed = client.post(
        f"{AUTH}/password",
        json={**new, "current_password": member.password},
        headers=bearer(tokens),
    )

    assert changed.status_code == 204
    assert subjects(runtime, mail_dir, member) == ["Your medchat password was changed"]


def test_wrong_step_up_passwords_count_like_wrong_sign_ins(client, runtime):
    member = make_member(runtime)
    stolen = bearer(login(client, runtime, member))
    for _ in range(5):
        answer = client.post(
            f"{AUTH}/mfa/enroll", json={"password": WRONG_PASSWORD}, headers=stolen
        )
        assert answer.status_code == 401

    right = client.post(f"{AUTH}/mfa/enroll", json={"password": member.password}, headers=stolen)
    change = client.post(
        f"{AUTH}/password",
        json={"current_password": member.password, "new_password": "orchid-tundra-pylon-88"},
        headers=stolen,
    )

    assert right.status_code == change.status_code == 429
    assert stored_account(runtime, member).totp_secret_ciphertext is None


def test_a_member_who_lost_their_authenticator_gets_back_in_with_recovery_codes(
    client, runtime, mail_dir
):
    """The runbook "A member lost their second factor" (docs/security.md), end to end."""
    member = make_member(runtime)
    codes = turn_totp_on(client, runtime, member, login(client, runtime, member))
    # The phone is gone: a recovery code signs in instead of a TOTP code.
    signed = client.post(
        f"{AUTH}/token",
        json={"email": member.email, "password": member.password, "totp_code": codes[0]},
    )
    assert signed.status_code == 200
    tokens = signed.get_json()

    removed = client.post(
        f"{AUTH}/mfa/remove",
        json={"password": member.password, "totp_code": codes[1]},
        headers=bearer(tokens),
    )

    assert removed.status_code == 204, removed.get_json()
    account = stored_account(runtime, member)
    assert account.totp_secret_ciphertext is None and account.totp_confirmed_at is None
    assert audited(runtime, "auth.mfa_remove") == [("auth.mfa_remove", "success")]
    assert subjects(runtime, mail_dir, member)[-1] == "Two-factor sign-in was turned off"
    alone = client.post(f"{AUTH}/token", json={"email": member.email, "password": member.password})
    assert alone.status_code == 200
    # The old recovery codes died with the old factor; a new device enrolls as the first did.
    runtime.clock.advance(seconds=30)
    turn_totp_on(client, runtime, member, alone.get_json())
    old_code = client.post(
        f"{AUTH}/token",
        json={"email": member.email, "password": member.password, "totp_code": codes[2]},
    )
    assert old_code.status_code == 401 and error_code(old_code) == "invalid_mfa_code"


def test_turning_it_off_needs_the_password_and_a_code_and_staff_keep_theirs(client, runtime):
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    codes = turn_totp_on(client, runtime, member, tokens)

    no_password = client.post(
        f"{AUTH}/mfa/remove",
        json={"password": WRONG_PASSWORD, "totp_code": codes[0]},
        headers=bearer(tokens),
    )
    no_code = client.post(
        f"{AUTH}/mfa/remove",
        json={"password": member.password, "totp_code": "not-a-code-at-all"},
        headers=bearer(tokens),
    )
    clinician = make_staff(runtime, Role.CLINICIAN)
    staff = client.post(
        f"{AUTH}/mfa/remove",
        json={"password": clinician.password, "totp_code": "123456"},
        headers=bearer(login(client, runtime, clinician)),
    )

    assert no_password.status_code == 401 and error_code(no_password) == "invalid_credentials"
    assert no_code.status_code == 401 and error_code(no_code) == "invalid_mfa_code"
    assert staff.status_code == 409
    assert stored_account(runtime, member).totp_confirmed_at is not None
    assert stored_account(runtime, clinician).totp_confirmed_at is not None


def test_the_openapi_document_asks_for_the_password(client):
    document = client.get("/api/v1/openapi.json").get_json()
    paths, schemas = document["paths"], document["components"]["schemas"]

    assert "requestBody" in paths["/api/v1/auth/mfa/enroll"]["post"]
    assert set(schemas["StepUp"]["required"]) == {"password"}
    assert set(schemas["MfaRemove"]["required"]) == {"password", "totp_code"}
    assert "204" in paths["/api/v1/auth/mfa/remove"]["post"]["responses"]
