"""A member corrects their e-mail address: ``POST /api/v1/me/email`` and ``/confirm``
(docs/data-rights.md "Rectification", issue 16 item 7).

Mail goes through the real folder adapter (``MEDCHAT_MAIL_URL=file://``); the token is read
from the mail as a member would. The password is the step-up; the answer is the same whether
the new address is free or taken; the address is stored only sealed until confirmed; the
account's ciphertext and blind index change together; the old address is told.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select, text

from access_control.roles import Role
from medchat.models import Account, AuditEntry, EmailChangeToken
from medchat.services.accounts import AccountService
from tests.support.accounts import Person, bearer, login, make_member, make_staff
from tests.support.mailbox import delivered

CHANGE = "/api/v1/me/email"
CONFIRM = "/api/v1/me/email/confirm"
NEW = "Camille.New@Example.net"
_TOKEN = re.compile(r"^email_token: (\S+)$", re.MULTILINE)


@pytest.fixture
def mail_dir(tmp_path):
    return tmp_path / "mail"


@pytest.fixture
def app(make_app, mail_dir):
    return make_app(mail_url=f"file://{mail_dir}")


@pytest.fixture
def member(runtime) -> Person:
    return make_member(runtime)


@pytest.fixture
def headers(client, runtime, member) -> dict[str, str]:
    return bearer(login(client, runtime, member))


def mails(runtime, mail_dir) -> list[Any]:
    return [message for message, _raw in delivered(runtime, mail_dir)]


def ask(client, headers, member: Person, new_email: str = NEW, password: str | None = None):
    body = {"password": password or member.password, "new_email": new_email}
    return client.post(CHANGE, json=body, headers=headers)


def token_mailed_to(runtime, mail_dir, address: str) -> str:
    message = [m for m in mails(runtime, mail_dir) if m["To"] == address][-1]
    match = _TOKEN.search(message.get_content())
    assert match, message.get_content()
    return match.group(1)


def account_row(runtime, member: Person) -> tuple[bytes, bytes, str]:
    with runtime.database.transaction() as session:
        account = session.get(Account, member.id)
        assert account is not None
        email = AccountService(session, runtime).email_of(account)
        return account.email_index, account.email_ciphertext, email


def sign_in_status(client, email: str, password: str) -> int:
    response = client.post("/api/v1/auth/token", json={"email": email, "password": password})
    return response.status_code  # type: ignore[no-any-return]


def actions(runtime, prefix: str) -> list[tuple[str, str]]:
    with runtime.database.transaction() as session:
        rows = session.execute(
            select(AuditEntry.action, AuditEntry.outcome)
            .where(AuditEntry.action.startswith(prefix))
            .order_by(AuditEntry.seq)
        ).all()
    return [(a, o) for a, o in rows]


# -- the whole flow ---------------------------------------------------------------------------


def test_the_full_flow_changes_the_address_and_tells_the_old_one(
    client, runtime, mail_dir, member, headers
):
    asked = ask(client, headers, member)
    assert (asked.status_code, asked.get_json()) == (202, {"status": "accepted"})
    # Nothing changed yet, and the pending address is stored only sealed.
    assert account_row(runtime, member)[2] == member.email
    with runtime.database.engine.connect() as connection:
        raw = connection.execute(text("SELECT * FROM email_change_tokens")).all()
    assert len(raw) == 1 and b"example.net" not in repr(raw).encode().lower()

    token = token_mailed_to(runtime, mail_dir, NEW)
    confirmed = client.post(CONFIRM, json={"token": token}, headers=headers)
    assert confirmed.status_code == 204, confirmed.get_json()

    index, _cipher, email = account_row(runtime, member)
    assert email == NEW
    assert index == runtime.profiles.email_index("camille.new@example.net")
    with runtime.database.transaction() as session:
        found = AccountService(session, runtime).find_by_email(NEW)
        assert found is not None and found.id == member.id
        assert AccountService(session, runtime).find_by_email(member.email) is None
    notices = [m for m in mails(runtime, mail_dir) if m["To"] == member.email]
    assert [m["Subject"] for m in notices] == ["Your medchat e-mail address was changed"]
    assert NEW not in notices[0].get_content()

    assert sign_in_status(client, NEW, member.password) == 200
    assert sign_in_status(client, member.email, member.password) == 401
    # Not a credential change: the session that asked still works.
    assert client.get("/api/v1/me", headers=headers).get_json()["email"] == NEW
    assert actions(runtime, "account.email_change") == [
        ("account.email_change_request", "success"),
        ("account.email_change", "success"),
    ]


def test_a_wrong_password_is_401_mails_nothing_and_stores_nothing(
    client, runtime, mail_dir, member, headers
):
    response = ask(client, headers, member, password="not-the-password-at-all")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_credentials"
    assert mails(runtime, mail_dir) == []
    with runtime.database.transaction() as session:
        assert session.scalars(select(EmailChangeToken)).all() == []
    assert actions(runtime, "account.email_change") == [("account.email_change_request", "failure")]


def test_a_taken_address_gets_the_same_answer_and_nothing_changes(
    client, runtime, mail_dir, member, headers
):
    other = make_member(runtime)
    free = ask(client, headers, member, new_email="someone.free@example.net")
    taken = ask(client, headers, member, new_email=other.email)
    assert (taken.status_code, taken.get_data()) == (free.status_code, free.get_data())
    assert sorted(taken.headers.keys()) == sorted(free.headers.keys())

    told = [m for m in mails(runtime, mail_dir) if m["To"] == other.email]
    assert [m["Subject"] for m in told] == ["Your medchat e-mail address was not changed"]
    assert not _TOKEN.search(told[0].get_content())
    assert "Camille" not in told[0].get_content()  # the asker is not named to the owner
    with runtime.database.transaction() as session:
        rows = session.scalars(select(EmailChangeToken)).all()
        assert len(rows) == 1  # the free address's only
    assert account_row(runtime, member)[2] == member.email
    assert account_row(runtime, other)[2] == other.email


def test_an_expired_token_is_refused(make_app, clock, mail_dir):
    """Five minutes here (the reset setting), so the session that asked is still live."""
    app = make_app(mail_url=f"file://{mail_dir}", password_reset_minutes=5)
    client, runtime = app.test_client(), app.extensions["medchat"]
    member = make_member(runtime)
    headers = bearer(login(client, runtime, member))
    ask(client, headers, member)
    token = token_mailed_to(runtime, mail_dir, NEW)
    clock.advance(minutes=5)
    response = client.post(CONFIRM, json={"token": token}, headers=headers)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "invalid_email_token"
    assert account_row(runtime, member)[2] == member.email


def test_an_expired_request_goes_at_the_next_sign_in(client, runtime, clock, mail_dir, member):
    """The sealed pending address does not linger: the sign-in purge deletes the row."""
    ask(client, bearer(login(client, runtime, member)), member)
    clock.advance(minutes=30)
    login(client, runtime, member)
    with runtime.database.transaction() as session:
        assert session.scalars(select(EmailChangeToken)).all() == []


def test_a_used_or_superseded_token_is_refused(client, runtime, mail_dir, member, headers):
    ask(client, headers, member, new_email="first@example.net")
    first = token_mailed_to(runtime, mail_dir, "first@example.net")
    ask(client, headers, member)
    second = token_mailed_to(runtime, mail_dir, NEW)
    # Only the newest request works.
    superseded = client.post(CONFIRM, json={"token": first}, headers=headers)
    assert superseded.status_code == 409
    assert client.post(CONFIRM, json={"token": second}, headers=headers).status_code == 204
    again = client.post(CONFIRM, json={"token": second}, headers=headers)
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "invalid_email_token"
    assert account_row(runtime, member)[2] == NEW


def test_another_members_token_is_refused(client, runtime, mail_dir, member, headers):
    ask(client, headers, member)
    token = token_mailed_to(runtime, mail_dir, NEW)
    intruder = make_member(runtime)
    theirs = bearer(login(client, runtime, intruder))
    response = client.post(CONFIRM, json={"token": token}, headers=theirs)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "invalid_email_token"
    assert account_row(runtime, intruder)[2] == intruder.email


def test_an_address_taken_between_request_and_confirmation_is_refused(
    client, runtime, mail_dir, member, headers
):
    ask(client, headers, member)
    token = token_mailed_to(runtime, mail_dir, NEW)
    make_member(runtime, email="camille.new@example.net")
    response = client.post(CONFIRM, json={"token": token}, headers=headers)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "email_taken"
    assert account_row(runtime, member)[2] == member.email


def test_a_planted_pending_address_is_refused(client, runtime, mail_dir, member, headers):
    """A database writer who swaps the sealed address of a pending row (for one of their own
    rows' ciphertexts) breaks the row's tag: 409, the account unchanged."""
    ask(client, headers, member, new_email="first@example.net")
    ask(client, headers, member)
    token = token_mailed_to(runtime, mail_dir, NEW)
    with runtime.database.engine.begin() as connection:
        rows = connection.execute(
            text("SELECT id, new_email_ciphertext, used_at FROM email_change_tokens")
        ).all()
        spent = next(r for r in rows if r.used_at is not None)
        connection.execute(
            text("UPDATE email_change_tokens SET new_email_ciphertext = :c WHERE used_at IS NULL"),
            {"c": spent.new_email_ciphertext},
        )
    response = client.post(CONFIRM, json={"token": token}, headers=headers)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "row_integrity_failed"
    assert account_row(runtime, member)[2] == member.email


@pytest.mark.parametrize(
    "body",
    [
        {"password": "x", "new_email": "not-an-address"},
        {"password": "x"},
        {"new_email": NEW},
        {"password": "x", "new_email": NEW, "extra": 1},
    ],
)
def test_bad_bodies_are_422(client, member, headers, body):
    assert client.post(CHANGE, json=body, headers=headers).status_code == 422


def test_a_confirmation_without_a_token_is_422(client, headers):
    assert client.post(CONFIRM, json={}, headers=headers).status_code == 422


def test_staff_ask_an_admin(client, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    headers = bearer(login(client, runtime, clinician))
    body = {"password": clinician.password, "new_email": NEW}
    assert client.post(CHANGE, json=body, headers=headers).status_code == 403


def test_the_deleted_account_leaves_no_pending_address(client, runtime, mail_dir, member, headers):
    ask(client, headers, member)
    deleted = client.post(
        "/api/v1/me/deletion", json={"password": member.password}, headers=headers
    )
    assert deleted.status_code == 202, deleted.get_json()
    with runtime.database.transaction() as session:
        assert session.scalars(select(EmailChangeToken)).all() == []
