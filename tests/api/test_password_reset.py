"""A member's forgotten password: ``/api/v1/auth/password-reset`` and ``/confirm`` (API.md
"Authentication", SECURITY-MODEL "Authentication" and key hierarchy 7).

The reset token is mailed (folder adapter), works once and for 30 minutes; every address gets
the same answer after the same kind of work; TOTP is asked where the member has it; every
session ends; the history waits until a clinician's session re-seals it (see
``test_history_after_reset.py`` for that flow).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from access_control.passwords import PasswordHasher
from access_control.roles import Role
from medchat.models import AccountStatus, AuditEntry, PasswordResetToken
from medchat.services import password_reset
from medchat.services.accounts import AccountService
from tests.support.accounts import Person, bearer, code_for, login, make_member, make_staff
from tests.support.conversations import start_conversation
from tests.support.mailbox import delivered, reset_token_in
from tests.support.messaging import care_team
from tests.support.responses import error_code
from tests.support.sessions import sign_in

RESET = "/api/v1/auth/password-reset"
CONFIRM = "/api/v1/auth/password-reset/confirm"
NEW_PASSWORD = "lichen-tundra-pelican-86"


@pytest.fixture
def mail_dir(tmp_path):
    return tmp_path / "mail"


@pytest.fixture
def app(make_app, mail_dir):
    return make_app(mail_url=f"file://{mail_dir}")


def ask_reset(client, runtime, mail_dir, person: Person) -> str:
    """Request a reset and return the token from the newest mail."""
    response = client.post(RESET, json={"email": person.email})
    assert response.status_code == 202, response.get_json()
    message, _raw = delivered(runtime, mail_dir)[-1]
    assert message["To"] == person.email
    return reset_token_in(message)


def confirm(client, token: str, password: str = NEW_PASSWORD, **extra: Any):
    return client.post(CONFIRM, json={"reset_token": token, "new_password": password, **extra})


def token_rows(runtime) -> list[PasswordResetToken]:
    with runtime.database.transaction() as session:
        return list(session.scalars(select(PasswordResetToken)))


# -- asking: the same answer and the same work for every address ---------------------------


def test_unknown_known_staff_and_disabled_addresses_get_the_same_answer(client, runtime, mail_dir):
    member = make_member(runtime)
    disabled = make_member(runtime)
    staff = make_staff(runtime, Role.CLINICIAN)
    with runtime.database.transaction() as session:
        AccountService(session, runtime).disable(disabled.id)

    answers = [
        client.post(RESET, json={"email": email})
        for email in (member.email, "nobody@example.org", staff.email, disabled.email)
    ]

    assert {(r.status_code, r.get_data()) for r in answers} == {(202, b'{"status":"accepted"}\n')}
    assert {tuple(sorted(r.headers.keys())) for r in answers} == {
        tuple(sorted(answers[0].headers.keys()))
    }
    mails = delivered(runtime, mail_dir)
    assert [m["To"] for m, _ in mails] == [member.email]
    assert [row.account_id for row in token_rows(runtime)] == [member.id]


def test_known_and_unknown_addresses_do_the_same_kind_of_work(
    client, runtime, monkeypatch, mail_dir
):
    """The timing class without timing: count the operations each branch performs, and show
    that neither hashes a password nor waits on the mail relay (a relay that hangs does not
    hold the answer back)."""
    member = make_member(runtime)
    staff = make_staff(runtime, Role.ADMIN)
    calls: Counter[str] = Counter()

    def counting(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        AccountService, "find_by_email", counting("lookup", AccountService.find_by_email)
    )
    monkeypatch.setattr(
        password_reset, "new_reset_token", counting("token", password_reset.new_reset_token)
    )
    monkeypatch.setattr(
        password_reset.crypto, "token_hash", counting("hash", password_reset.crypto.token_hash)
    )
    for method in ("hash", "verify"):
        monkeypatch.setattr(
            PasswordHasher, method, counting("bcrypt", getattr(PasswordHasher, method))
        )
    release = threading.Event()
    sent_on: list[int] = []

    class HangingRelay:
        def send(self, message):
            sent_on.append(threading.get_ident())
            release.wait(10)

    monkeypatch.setattr(runtime.postman, "mailer", HangingRelay())

    work = {}
    for label, email in (
        ("member", member.email),
        ("unknown", "nobody@example.org"),
        ("staff", staff.email),
    ):
        calls.clear()
        response = client.post(RESET, json={"email": email})
        assert response.status_code == 202
        work[label] = dict(calls)

    assert (
        work["member"]
        == work["unknown"]
        == work["staff"]
        == {
            "lookup": 1,
            "token": 1,
            "hash": 1,
        }
    )
    # All three answered while the member's mail was still stuck in the relay.
    assert not release.is_set()
    release.set()
    assert runtime.postman.wait()
    assert len(sent_on) == 1 and sent_on[0] != threading.get_ident()


def test_reset_requests_are_rate_limited_per_address_alike_for_unknown_ones(client, runtime):
    member = make_member(runtime)

    for email in (member.email, "nobody@example.org"):
        answers = [client.post(RESET, json={"email": email}).status_code for _ in range(6)]
        assert answers == [202] * 5 + [429]


def test_the_reset_mail_carries_the_token_and_the_first_name_only(client, runtime, mail_dir):
    team = care_team(runtime)
    member = make_member(runtime, first_name="Camille", last_name="Durand")
    subject, body = "Rash on my forearm", "It itches at night since Tuesday."
    start_conversation(runtime, sign_in(runtime, member).principal, subject=subject, bodies=[body])
    assert team

    token = ask_reset(client, runtime, mail_dir, member)
    assert confirm(client, token).status_code == 204

    reset_mail, notice = delivered(runtime, mail_dir)
    for message, raw in (reset_mail, notice):
        assert message["To"] == member.email
        assert "Hello Camille," in message.get_content()
        for private in (subject, body, "Durand", "+33 6 12 34 56 78", "FR-0000-1", "forearm"):
            assert private not in raw.decode(), private
        # The birth year is four digits: looked for in what a reader sees, less the two random
        # strings (the Message-ID's digits and the token's letters may hold any four digits).
        seen = "\n".join(f"{name}: {value}" for name, value in message.items())
        seen = (seen + "\n" + message.get_content()).replace(message["Message-ID"], "")
        assert "1988" not in seen.replace(token, ""), seen
    assert reset_mail[0]["Subject"] == "Your medchat password reset code"
    assert token.startswith("mcp_")
    assert notice[0]["Subject"] == "Your medchat password was changed"
    assert token not in notice[1].decode()


def test_the_token_is_stored_only_as_a_hash(client, runtime, mail_dir):
    member = make_member(runtime)

    token = ask_reset(client, runtime, mail_dir, member)

    (row,) = token_rows(runtime)
    assert token.encode() not in row.token_hash and len(row.token_hash) == 32
    assert row.expires_at == row.created_at + runtime.settings.password_reset_ttl


# -- confirming ------------------------------------------------------------------------


def test_a_reset_token_works_once(client, runtime, mail_dir):
    member = make_member(runtime)
    token = ask_reset(client, runtime, mail_dir, member)

    first = confirm(client, token)
    again = confirm(client, token, password="another-harbor-glacier-73")

    assert first.status_code == 204
    assert again.status_code == 401 and error_code(again) == "invalid_reset_token"
    login(client, runtime, Person(member.id, member.email, NEW_PASSWORD, Role.MEMBER))


def test_a_reset_token_works_for_30_minutes_and_not_after(client, runtime, mail_dir):
    member = make_member(runtime)
    late = ask_reset(client, runtime, mail_dir, member)
    runtime.clock.advance(minutes=31)

    refused = confirm(client, late)

    assert refused.status_code == 401 and error_code(refused) == "invalid_reset_token"
    in_time = ask_reset(client, runtime, mail_dir, member)
    runtime.clock.advance(minutes=29)
    assert confirm(client, in_time).status_code == 204


@pytest.mark.parametrize("token", ["mcp_unknown", "x", "mce_" + "A" * 43])
def test_an_unknown_token_is_refused(client, token):
    response = confirm(client, token)

    assert response.status_code == 401 and error_code(response) == "invalid_reset_token"


def test_a_new_request_kills_the_earlier_token(client, runtime, mail_dir):
    member = make_member(runtime)
    first = ask_reset(client, runtime, mail_dir, member)
    second = ask_reset(client, runtime, mail_dir, member)

    refused = confirm(client, first)

    assert refused.status_code == 401 and error_code(refused) == "invalid_reset_token"
    assert confirm(client, second).status_code == 204


def test_a_token_dies_when_the_account_is_disabled(client, runtime, mail_dir):
    member = make_member(runtime)
    token = ask_reset(client, runtime, mail_dir, member)
    with runtime.database.transaction() as session:
        AccountService(session, runtime).disable(member.id)

    response = confirm(client, token)

    assert response.status_code == 401 and error_code(response) == "invalid_reset_token"


def test_a_member_with_totp_must_give_a_code_and_failures_do_not_spend_the_token(
    client, runtime, mail_dir
):
    member = make_member(runtime, totp=True)
    token = ask_reset(client, runtime, mail_dir, member)

    missing = confirm(client, token)
    wrong = confirm(client, token, totp_code="000000")
    runtime.clock.advance(seconds=30)
    right = confirm(client, token, totp_code=code_for(member, runtime))

    assert missing.status_code == 401 and error_code(missing) == "mfa_required"
    assert wrong.status_code == 401 and error_code(wrong) == "invalid_mfa_code"
    assert right.status_code == 204
    # The member keeps TOTP: signing in with the new password still asks for a code.
    after = Person(member.id, member.email, NEW_PASSWORD, Role.MEMBER, member.totp_secret)
    no_code = client.post(
        "/api/v1/auth/token", json={"email": after.email, "password": NEW_PASSWORD}
    )
    assert error_code(no_code) == "mfa_required"
    login(client, runtime, after)


def test_wrong_codes_are_limited_per_token_like_sign_in_failures(client, runtime, mail_dir):
    member = make_member(runtime, totp=True)
    token = ask_reset(client, runtime, mail_dir, member)

    wrong = [confirm(client, token, totp_code="000000").status_code for _ in range(5)]
    runtime.clock.advance(seconds=30)
    locked = confirm(client, token, totp_code=code_for(member, runtime))

    assert wrong == [401] * 5
    assert locked.status_code == 429 and "Retry-After" in locked.headers


def test_a_recovery_code_stands_in_for_a_lost_totp_device(client, runtime, mail_dir):
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    client.post(
        "/api/v1/auth/mfa/enroll", json={"password": member.password}, headers=bearer(tokens)
    )
    with runtime.database.transaction() as session:
        accounts = AccountService(session, runtime)
        member.totp_secret = accounts.totp_secret(accounts.get(member.id))
    confirmed = client.post(
        "/api/v1/auth/mfa/confirm",
        json={"totp_code": code_for(member, runtime)},
        headers=bearer(tokens),
    )
    recovery = confirmed.get_json()["recovery_codes"][0]
    token = ask_reset(client, runtime, mail_dir, member)

    assert confirm(client, token, totp_code=recovery).status_code == 204


def test_a_weak_password_is_refused_without_spending_the_token(client, runtime, mail_dir):
    member = make_member(runtime)
    token = ask_reset(client, runtime, mail_dir, member)

    weak = confirm(client, token, password="password1")
    own_name = confirm(client, token, password="camilledurand")

    assert weak.status_code == 422 and error_code(weak) == "weak_password"
    assert own_name.status_code == 422 and error_code(own_name) == "weak_password"
    assert confirm(client, token).status_code == 204


def test_after_a_reset_every_old_session_is_dead_and_only_the_new_password_works(
    client, runtime, mail_dir
):
    member = make_member(runtime)
    first = login(client, runtime, member)
    second = login(client, runtime, member)
    token = ask_reset(client, runtime, mail_dir, member)

    assert confirm(client, token).status_code == 204

    for tokens in (first, second):
        me = client.get("/api/v1/me", headers=bearer(tokens))
        assert me.status_code == 401 and error_code(me) == "invalid_token"
        refreshed = client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 401
    old = client.post(
        "/api/v1/auth/token", json={"email": member.email, "password": member.password}
    )
    assert old.status_code == 401 and error_code(old) == "invalid_credentials"
    fresh = login(client, runtime, Person(member.id, member.email, NEW_PASSWORD, Role.MEMBER))
    assert client.get("/api/v1/me", headers=bearer(fresh)).status_code == 200


def test_a_reset_gives_the_member_a_new_keypair_and_retires_the_old(client, runtime, mail_dir):
    member = make_member(runtime)
    with runtime.database.transaction() as session:
        before = runtime.custody(session).personal_key(member.id)
    token = ask_reset(client, runtime, mail_dir, member)

    confirm(client, token)

    with runtime.database.transaction() as session:
        after = runtime.custody(session).verified_personal_key(member.id)
        account = AccountService(session, runtime).get(member.id)
        assert account.status == AccountStatus.ACTIVE
    assert before is not None and after.key_id != before.key_id


def test_resets_are_audited_without_personal_data(client, runtime, mail_dir):
    member = make_member(runtime, first_name="Camille", last_name="Durand")
    token = ask_reset(client, runtime, mail_dir, member)
    client.post(RESET, json={"email": "nobody@example.org"})
    confirm(client, "mcp_unknown")
    confirm(client, token)

    with runtime.database.transaction() as session:
        entries = list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.like("auth.password_reset%"))
                .order_by(AuditEntry.seq)
            )
        )
    summary = [(e.action, e.outcome, e.target_id) for e in entries]
    assert summary == [
        ("auth.password_reset_request", "success", str(member.id)),
        ("auth.password_reset_request", "ignored", None),
        ("auth.password_reset", "failure", None),
        ("auth.password_reset", "success", str(member.id)),
    ]
    dumped = json.dumps([e.details for e in entries]) + "".join(str(e.target_id) for e in entries)
    for private in (member.email, "nobody@example.org", "Camille", "Durand", token, NEW_PASSWORD):
        assert private not in dumped
