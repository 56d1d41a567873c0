"""Notifications that carry no health content (issue 17 item 1), end to end on real sockets.

A member opts in, registers a Web Push subscription made with a real P-256 key, asks; a
doctor answers. ``NotifyWorker`` (what ``medchat notify run`` runs) then delivers to a local
push endpoint, which the test decrypts as the browser would (RFC 8291, aes128gcm), to the
folder mailer, and to a local webhook whose HMAC the test checks: none of them holds the
question, its subject, the answer, a name or the address. Then: the endpoint down and up
again (nothing lost, nothing sent twice), two workers at once (PostgreSQL), planted and
altered outbox rows (refused, audited, never sent), and the API's validation.
"""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import threading
import uuid
from datetime import timedelta
from email import policy

import pytest
from sqlalchemy import select, update

from access_control.roles import Role
from medchat.models import AuditEntry, Channel, NotificationOutbox, PushSubscription
from medchat.services.notify_channels import SIGNATURE_HEADER
from medchat.services.notify_worker import NotifyWorker
from tests.support import push_endpoint
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.messaging import asked, care_team, claim, give_consent, send

CASES = "/api/v1/clinician/conversations"
SETTINGS = "/api/v1/me/notifications"
SUBSCRIPTIONS = "/api/v1/me/push-subscriptions"
SUBJECT = "Itching rash on the left arm"
QUESTION = "The rash has spread since Monday, should I worry about shingles?"
ANSWER = "It sounds like contact dermatitis; use the cream twice a day."
FIRST_NAME = "Ophelie"
SECRETS = (SUBJECT, QUESTION, ANSWER, FIRST_NAME, "Durand", "Martin", "rash", "cream")


@pytest.fixture
def endpoint():
    with push_endpoint.running() as server:
        yield server


@pytest.fixture
def mail_dir(tmp_path):
    return tmp_path / "mail"


@pytest.fixture
def app(make_app, endpoint, mail_dir):
    return make_app(
        mail_url=f"file://{mail_dir}", notify_webhook_url=f"{endpoint.base}/insurer-hook"
    )


def _member(client, runtime, endpoint, channels=("push", "email", "webhook")):
    member = make_member(runtime, first_name=FIRST_NAME, email=f"{FIRST_NAME.lower()}@example.org")
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    browser = push_endpoint.BrowserKeys()
    answer = client.post(
        SUBSCRIPTIONS, json=browser.as_json(f"{endpoint.base}/push/abc"), headers=bearer(tokens)
    )
    assert answer.status_code == 201, answer.get_json()
    answer = client.put(SETTINGS, json={c: True for c in channels}, headers=bearer(tokens))
    assert answer.status_code == 200, answer.get_json()
    return member, tokens, browser


def _answered(client, runtime, tokens, doctor_tokens):
    conversation = asked(client, tokens, QUESTION, subject=SUBJECT)
    claim(client, doctor_tokens, conversation)  # answering needs the claim (issue 17, item 3)
    reply = send(client, doctor_tokens, f"{CASES}/{conversation}/messages", ANSWER)
    assert reply.status_code == 201, reply.get_json()
    return conversation


def _doctor(client, runtime):
    team = care_team(runtime)
    return login(client, runtime, team.clinician)


def _outbox(runtime):
    with runtime.database.transaction() as session:
        return list(
            session.scalars(select(NotificationOutbox).order_by(NotificationOutbox.channel))
        )


def _mails(mail_dir):
    if not mail_dir.exists():
        return []
    parsed = [
        email.message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in sorted(mail_dir.iterdir())
    ]
    return [m for m in parsed if "<notification-" in str(m["Message-ID"])]


def _holds_nothing(text: str) -> None:
    lowered = text.lower()
    for secret in SECRETS:
        assert secret.lower() not in lowered, secret
    assert "@example.org" not in lowered


def test_a_reply_reaches_every_channel_with_no_content(
    client, runtime, endpoint, mail_dir, key_dir
):
    doctor = _doctor(client, runtime)
    member, tokens, browser = _member(client, runtime, endpoint)
    _answered(client, runtime, tokens, doctor)
    rows = _outbox(runtime)
    assert sorted(row.channel for row in rows) == ["email", "push", "webhook"]
    assert {row.kind for row in rows} == {"reply"} and {row.account_id for row in rows} == {
        member.id
    }

    result = NotifyWorker(runtime).run()
    assert (result.sent, result.failed, result.refused) == (3, 0, 0)

    # Web Push: decrypted as the browser would, an opaque id and the generic text only.
    (push,) = endpoint.taken("/push/abc")
    assert push.headers["content-encoding"] == "aes128gcm"
    payload = json.loads(browser.decrypt(push.body))
    assert payload == {"id": str(rows[0].event_id), "text": "You have a new message"}
    vapid = client.get("/api/v1/push/vapid-key").get_json()["public_key"]
    assert f"k={vapid}" in push.headers["authorization"]
    assert push.headers["topic"] == rows[1].id.hex
    _holds_nothing(json.dumps(push.headers))

    # E-mail: the generic text and a link, to the member's own address, no name.
    (mail,) = _mails(mail_dir)
    assert mail["To"] == f"{FIRST_NAME.lower()}@example.org"
    _holds_nothing(str(mail["Subject"]) + mail.get_content())
    assert "You have a new message" in mail.get_content()
    assert runtime.settings.public_base_url in mail.get_content()

    # Webhook: signed with notify-webhook.key over "<t>." + body.
    (hook,) = endpoint.taken("/insurer-hook")
    body = json.loads(hook.body)
    assert body["kind"] == "reply" and body["account_id"] == str(member.id)
    assert hook.headers["idempotency-key"] == body["id"]
    stamp, signature = (
        part.split("=", 1)[1] for part in hook.headers[SIGNATURE_HEADER.lower()].split(",")
    )
    key = (key_dir / "notify-webhook.key").read_bytes()
    expected = hmac.new(key, f"{stamp}.".encode() + hook.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    _holds_nothing(hook.body.decode())

    # Delivered rows are never sent again.
    assert NotifyWorker(runtime).run().handled == 0
    assert len(endpoint.requests) == 2


def test_endpoint_down_then_up_loses_nothing_and_sends_once(client, runtime, endpoint, clock):
    doctor = _doctor(client, runtime)
    _, tokens, browser = _member(client, runtime, endpoint, channels=("push",))
    endpoint.down = True
    _answered(client, runtime, tokens, doctor)
    (row,) = _outbox(runtime)

    first = NotifyWorker(runtime).run()
    assert (first.sent, first.failed) == (0, 1)
    (pending,) = _outbox(runtime)
    assert pending.delivered_at is None and pending.attempts == 1
    assert pending.next_attempt_at == clock.now() + timedelta(seconds=30)
    assert NotifyWorker(runtime).run().handled == 0  # not due yet

    clock.advance(seconds=31)
    second = NotifyWorker(runtime).run()
    assert (second.sent, second.failed) == (0, 1)
    assert _outbox(runtime)[0].next_attempt_at == clock.now() + timedelta(seconds=60)

    endpoint.down = False
    clock.advance(seconds=61)
    third = NotifyWorker(runtime).run()
    assert (third.sent, third.failed) == (1, 0)
    clock.advance(hours=2)
    assert NotifyWorker(runtime).run().handled == 0
    clock.advance(days=30)
    assert NotifyWorker(runtime).run().purged == 1
    assert _outbox(runtime) == []

    assert len(endpoint.taken("/push/abc")) == 1
    assert {r.headers["topic"] for r in endpoint.requests} == {row.id.hex}
    assert len(endpoint.requests) == 3  # two refused attempts, one delivery
    assert json.loads(browser.decrypt(endpoint.taken("/push/abc")[0].body))["id"] == str(
        row.event_id
    )


def test_two_workers_at_once_send_each_notification_once(client, runtime, endpoint):
    if not runtime.database.is_postgresql:
        pytest.skip("row locks that skip (FOR UPDATE SKIP LOCKED) are PostgreSQL's")
    doctor = _doctor(client, runtime)
    _, tokens, _ = _member(client, runtime, endpoint, channels=("push",))
    conversation = asked(client, tokens, QUESTION, subject=SUBJECT)
    claim(client, doctor, conversation)
    for n in range(6):
        answer = send(client, doctor, f"{CASES}/{conversation}/messages", f"{ANSWER} {n}")
        assert answer.status_code == 201
    rows = _outbox(runtime)
    assert len(rows) == 6
    endpoint.delay = 0.2  # each send holds its row lock a while: the workers overlap
    barrier = threading.Barrier(2)
    results = []

    def work() -> None:
        barrier.wait()
        results.append(NotifyWorker(runtime, batch_size=1).run())

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(r.sent for r in results) == 6
    assert all(r.sent for r in results), "both workers took a share"
    topics = [r.headers["topic"] for r in endpoint.taken("/push/abc")]
    assert sorted(topics) == sorted(row.id.hex for row in rows)


def _planted_values(member_id, **extra):
    now = extra.pop("now")
    return {
        "id": uuid.uuid4(),
        "event_id": uuid.uuid4(),
        "kind": "reply",
        "account_id": member_id,
        "channel": Channel.PUSH.value,
        "ref_id": None,
        "created_at": now,
        "attempts": 0,
        "next_attempt_at": now,
        "delivered_at": None,
        "row_tag": None,
        **extra,
    }


def test_a_planted_or_reopened_outbox_row_is_refused_and_never_sent(
    client, runtime, endpoint, clock
):
    doctor = _doctor(client, runtime)
    member, tokens, _ = _member(client, runtime, endpoint, channels=("push",))
    _answered(client, runtime, tokens, doctor)
    assert NotifyWorker(runtime).run().sent == 1
    (delivered,) = _outbox(runtime)
    table = NotificationOutbox.__table__
    with runtime.database.engine.begin() as connection:
        # A writer of the database plants a row, and clears a delivered row's delivered_at.
        planted = _planted_values(member.id, now=clock.now(), row_tag=b"\0" * 32)
        connection.execute(table.insert().values(**planted))
        connection.execute(
            update(table).where(table.c.id == delivered.id).values(delivered_at=None)
        )
    result = NotifyWorker(runtime).run()
    assert (result.sent, result.refused) == (0, 2)
    assert len(endpoint.taken("/push/abc")) == 1
    assert _outbox(runtime) == []
    with runtime.database.transaction() as session:
        refused = session.scalars(
            select(AuditEntry.target_id).where(AuditEntry.action == "integrity.row_refused")
        ).all()
    assert {str(planted["id"]), str(delivered.id)} <= set(refused)


def test_a_planted_push_subscription_gets_nothing(client, runtime, endpoint):
    doctor = _doctor(client, runtime)
    _, tokens, _ = _member(client, runtime, endpoint, channels=("push",))
    with runtime.database.transaction() as session:
        (real,) = session.scalars(select(PushSubscription)).all()
    with runtime.database.engine.begin() as connection:
        connection.execute(
            update(PushSubscription.__table__)
            .where(PushSubscription.__table__.c.id == real.id)
            .values(endpoint=f"{endpoint.base}/push/stranger")
        )
    _answered(client, runtime, tokens, doctor)
    NotifyWorker(runtime).run()
    assert endpoint.taken("/push/stranger") == []


def test_no_opt_in_no_notification_and_opting_in_is_audited_and_exported(client, runtime, endpoint):
    doctor = _doctor(client, runtime)
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    state = client.get(SETTINGS, headers=bearer(tokens)).get_json()
    assert state["push"]["enabled"] is False and state["email"]["enabled"] is False
    _answered(client, runtime, tokens, doctor)
    assert _outbox(runtime) == []

    answer = client.put(SETTINGS, json={"email": True}, headers=bearer(tokens))
    assert answer.get_json()["email"]["enabled"] is True
    client.put(SETTINGS, json={"email": False}, headers=bearer(tokens))
    with runtime.database.transaction() as session:
        decisions = session.scalars(
            select(AuditEntry.details).where(AuditEntry.action == "notification.consent")
        ).all()
    assert sorted(json.loads(d)["enabled"] for d in decisions) == [False, True]
    export = client.get("/api/v1/me/export", headers=bearer(tokens)).get_json()
    assert export["notifications"]["channels"]["email"]["enabled"] is False
    assert export["notifications"]["push_subscriptions"] == 0


def test_opting_out_after_the_event_sends_nothing(client, runtime, endpoint):
    doctor = _doctor(client, runtime)
    _, tokens, _ = _member(client, runtime, endpoint, channels=("push",))
    _answered(client, runtime, tokens, doctor)
    client.put(SETTINGS, json={"push": False}, headers=bearer(tokens))
    result = NotifyWorker(runtime).run()
    assert (result.sent, result.skipped) == (0, 1)
    assert endpoint.requests == []


def test_a_closed_question_notifies_too(client, runtime, endpoint):
    doctor = _doctor(client, runtime)
    _, tokens, browser = _member(client, runtime, endpoint, channels=("push",))
    conversation = asked(client, tokens, QUESTION, subject=SUBJECT)
    closed = client.post(f"{CASES}/{conversation}/close", headers=bearer(doctor))
    assert closed.status_code == 200, closed.get_json()
    assert [row.kind for row in _outbox(runtime)] == ["closed"]
    NotifyWorker(runtime).run()
    (push,) = endpoint.taken("/push/abc")
    assert json.loads(browser.decrypt(push.body))["text"] == "You have a new message"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"endpoint": "http://fcm.googleapis.com/x"}, "endpoint"),
        ({"endpoint": "https://user:pw@fcm.googleapis.com/x"}, "endpoint"),
        ({"endpoint": "ftp://fcm.googleapis.com/abcdef"}, "endpoint"),
        ({"endpoint": "https://10.0.0.5/internal/admin"}, "endpoint"),
        ({"endpoint": "https://push.example.com/abc"}, "endpoint"),
        ({"endpoint": "https://fcm.googleapis.com.evil.example/abc"}, "endpoint"),
        ({"keys": {"p256dh": "B" + "A" * 86, "auth": "A" * 22}}, "keys.p256dh"),
        ({"keys": {"p256dh": "!" * 87, "auth": "A" * 22}}, "keys"),
        ({"keys": {"auth": "A" * 22}}, "keys"),
        ({"keys": None}, "keys"),
        ({"extra": 1}, "extra"),
    ],
)
def test_a_bad_subscription_is_a_422_and_stores_nothing(client, runtime, change, field):
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    body = {
        **push_endpoint.BrowserKeys().as_json("https://fcm.googleapis.com/fcm/send/abc"),
        **change,
    }
    answer = client.post(SUBSCRIPTIONS, json=body, headers=bearer(tokens))
    assert answer.status_code == 422, answer.get_json()
    assert field in json.dumps(answer.get_json()["error"]["details"])
    with runtime.database.transaction() as session:
        assert session.scalars(select(PushSubscription)).all() == []


def test_subscriptions_are_removed_by_their_owner_only(client, runtime):
    owner = login(client, runtime, make_member(runtime))
    other = login(client, runtime, make_member(runtime))
    body = push_endpoint.BrowserKeys().as_json("https://fcm.googleapis.com/fcm/send/abc")
    created = client.post(SUBSCRIPTIONS, json=body, headers=bearer(owner)).get_json()
    path = f"{SUBSCRIPTIONS}/{created['id']}"
    assert client.delete(path, headers=bearer(other)).status_code == 404
    assert client.delete(path, headers=bearer(owner)).status_code == 204
    assert client.delete(path, headers=bearer(owner)).status_code == 404
    doctor = login(client, runtime, make_staff(runtime, Role.CLINICIAN))
    assert client.post(SUBSCRIPTIONS, json=body, headers=bearer(doctor)).status_code == 403


def test_the_webhook_notifies_only_where_configured(make_app, endpoint):
    app = make_app(notify_webhook_url="")
    client = app.test_client()
    runtime = app.extensions["medchat"]
    doctor = _doctor(client, runtime)
    _, tokens, _ = _member(client, runtime, endpoint, channels=("webhook",))
    assert client.get(SETTINGS, headers=bearer(tokens)).get_json()["webhook"]["enabled"]
    _answered(client, runtime, tokens, doctor)
    assert _outbox(runtime) == []


@pytest.mark.parametrize("body", [{}, {"push": 1}, {"email": "yes"}, {"sms": True}, {"push": None}])
def test_a_bad_settings_body_is_a_422_and_decides_nothing(client, runtime, body):
    tokens = login(client, runtime, make_member(runtime))
    answer = client.put(SETTINGS, json=body, headers=bearer(tokens))
    assert answer.status_code == 422, answer.get_json()
    state = client.get(SETTINGS, headers=bearer(tokens)).get_json()
    assert not any(channel["enabled"] for channel in state.values())
