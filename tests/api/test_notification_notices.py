"""The other notifications of issue 17: a sign-in from a new device (mailed whatever the
member chose, item 6), history pending after a reset, the clinicians' digest (a count
only), and ``medchat notify run|digest``. Each mail is checked for names and content."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat.models import KnownDevice, NotificationOutbox
from medchat.services.notify_worker import NotifyWorker
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.cli import cli_runner
from tests.support.console import console_login
from tests.support.mailbox import delivered, reset_token_in
from tests.support.messaging import asked, care_team, give_consent

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
FIRST_NAME = "Ophelie"
QUESTION = "My left knee is swollen after the fall, is it broken?"


@pytest.fixture
def mail_dir(tmp_path):
    return tmp_path / "mail"


@pytest.fixture
def app(make_app, mail_dir):
    return make_app(mail_url=f"file://{mail_dir}")


def _notifications(runtime, mail_dir):
    messages = [message for message, _ in delivered(runtime, mail_dir)]
    return [m for m in messages if "<notification-" in str(m["Message-ID"])]


def _sign_in(client, runtime, person, agent):
    client.environ_base["HTTP_USER_AGENT"] = agent
    try:
        return login(client, runtime, person)
    finally:
        del client.environ_base["HTTP_USER_AGENT"]


def _kinds(runtime):
    with runtime.database.transaction() as session:
        return sorted(session.scalars(select(NotificationOutbox.kind)))


def test_a_sign_in_from_a_new_device_is_mailed_once_with_no_content(client, runtime, mail_dir):
    member = make_member(runtime, first_name=FIRST_NAME)
    _sign_in(client, runtime, member, FIREFOX)  # the first device: remembered, not mailed
    _sign_in(client, runtime, member, FIREFOX)
    assert _kinds(runtime) == []
    _sign_in(client, runtime, member, IPHONE)
    _sign_in(client, runtime, member, IPHONE)
    assert _kinds(runtime) == ["new_device"]
    with runtime.database.transaction() as session:
        devices = sorted(session.scalars(select(KnownDevice.device)))
    assert devices == ["Firefox on Linux", "Safari on iOS"]

    assert NotifyWorker(runtime).run().sent == 1
    (mail,) = _notifications(runtime, mail_dir)
    assert mail["To"] == member.email
    text = mail.get_content()
    assert "Safari on iOS" in text and "network" in text
    assert runtime.clock.now().strftime("%Y-%m-%d") in text
    assert FIRST_NAME not in text + str(mail["Subject"])
    assert "Durand" not in text


def test_a_new_device_is_mailed_whatever_the_member_chose(client, runtime, mail_dir):
    member = make_member(runtime)
    tokens = _sign_in(client, runtime, member, FIREFOX)
    client.put("/api/v1/me/notifications", json={"email": False}, headers=bearer(tokens))
    _sign_in(client, runtime, member, IPHONE)
    NotifyWorker(runtime).run()
    assert len(_notifications(runtime, mail_dir)) == 1


def test_a_failed_sign_in_from_a_new_device_mails_nothing(client, runtime):
    member = make_member(runtime)
    _sign_in(client, runtime, member, FIREFOX)
    client.environ_base["HTTP_USER_AGENT"] = IPHONE
    answer = client.post(
        "/api/v1/auth/token", json={"email": member.email, "password": "wrong password 1234"}
    )
    assert answer.status_code == 401
    assert _kinds(runtime) == []


def test_history_pending_after_a_reset_is_announced(client, runtime, mail_dir):
    team = care_team(runtime)
    member = make_member(runtime, first_name=FIRST_NAME)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    client.put("/api/v1/me/notifications", json={"email": True}, headers=bearer(tokens))
    asked(client, tokens, QUESTION)
    doctor = login(client, runtime, team.clinician)
    assert client.get("/api/v1/clinician/queue", headers=bearer(doctor)).status_code == 200
    assert (
        client.post("/api/v1/auth/password-reset", json={"email": member.email}).status_code == 202
    )
    token = reset_token_in(delivered(runtime, mail_dir)[-1][0])
    confirmed = client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"reset_token": token, "new_password": "a brand new passphrase 2027!"},
    )
    assert confirmed.status_code == 204, confirmed.get_json()
    assert _kinds(runtime) == ["history_pending"]
    NotifyWorker(runtime).run()
    (mail,) = _notifications(runtime, mail_dir)
    assert "knee" not in mail.get_content() and FIRST_NAME not in mail.get_content()


def test_the_digest_counts_waiting_questions_once_a_day(client, runtime, app, mail_dir, clock):
    team = care_team(runtime)
    other = make_staff(runtime, Role.CLINICIAN)
    make_staff(runtime, Role.COMPLIANCE)
    member = make_member(runtime, first_name=FIRST_NAME)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    asked(client, tokens, QUESTION)
    asked(client, tokens, "A second question about my knee?")
    runner = cli_runner(app)
    first = runner.invoke(args=["notify", "digest", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.output) == {"queued": 2}
    again = runner.invoke(args=["notify", "digest", "--json"])
    assert json.loads(again.output) == {"queued": 0}

    sent = runner.invoke(args=["notify", "run", "--once", "--json"])
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.output)["sent"] == 2
    mails = _notifications(runtime, mail_dir)
    assert sorted(str(m["To"]) for m in mails) == sorted([team.clinician.email, other.email])
    for mail in mails:
        assert "Questions waiting for a doctor now: 2." in mail.get_content()
        assert "knee" not in mail.get_content() and FIRST_NAME not in mail.get_content()

    clock.advance(hours=24)
    assert json.loads(runner.invoke(args=["notify", "digest", "--json"]).output) == {"queued": 2}


def test_erasure_deletes_subscriptions_choices_devices_and_pending_notifications(client, runtime):
    from medchat.models import NotificationPreference, PushSubscription
    from tests.support.push_endpoint import BrowserKeys

    member = make_member(runtime)
    tokens = _sign_in(client, runtime, member, FIREFOX)
    _sign_in(client, runtime, member, IPHONE)  # a pending new-device notice
    body = BrowserKeys().as_json("https://web.push.apple.com/QGuQyav")
    assert (
        client.post("/api/v1/me/push-subscriptions", json=body, headers=bearer(tokens)).status_code
        == 201
    )
    client.put("/api/v1/me/notifications", json={"push": True}, headers=bearer(tokens))
    erased = client.post(
        "/api/v1/me/deletion", json={"password": member.password}, headers=bearer(tokens)
    )
    assert erased.status_code == 202, erased.get_json()
    with runtime.database.transaction() as session:
        for model in (PushSubscription, NotificationPreference, KnownDevice, NotificationOutbox):
            assert session.scalars(select(model)).all() == [], model.__name__


def test_a_console_sign_in_from_a_new_device_is_mailed_too(app, runtime, mail_dir):
    """Console sessions record their device (``ConsoleSessions.origin``): a clinician's
    console sign-in from a browser the account never used is mailed like an API sign-in."""
    doctor = care_team(runtime).clinician
    for agent in (FIREFOX, FIREFOX, IPHONE):
        browser = app.test_client()
        browser.environ_base["HTTP_USER_AGENT"] = agent
        console_login(browser, runtime, doctor)
    assert _kinds(runtime) == ["new_device"]
    assert NotifyWorker(runtime).run().sent == 1
    (mail,) = _notifications(runtime, mail_dir)
    assert mail["To"] == doctor.email and "Safari on iOS" in mail.get_content()
