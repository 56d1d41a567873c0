"""Where a push goes: only to a push service's host, as the HTTP client that delivers reads
the URL; and what the worker deletes on its own (a subscription nothing reaches, delivered
outbox rows) is audited, as every data change is.

A member chose an endpoint that ``urlsplit`` read as a push service's host and requests
(urllib3) as 127.0.0.1 (``https://127.0.0.1\\.fcm.googleapis.com/...``): the server would
have posted to an address of the member's choosing. The rule now refuses any URL the two
parsers read differently, and checks a stored endpoint again before each delivery.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import select

from medchat.errors import ValidationFailed
from medchat.models import AuditEntry, PushSubscription
from medchat.services.notifications import check_endpoint
from medchat.services.notify_worker import NotifyWorker
from tests.support import push_endpoint
from tests.support.accounts import bearer, login, make_member
from tests.support.messaging import asked, care_team, claim, give_consent, send

ALLOWED = ("fcm.googleapis.com", "push.services.mozilla.com")
SUBSCRIPTIONS = "/api/v1/me/push-subscriptions"
#: URLs whose host one parser or another reads differently, or reads as not a push service.
HOSTILE = [
    "https://127.0.0.1\\.fcm.googleapis.com/fcm/send/abc",
    "https://127.0.0.1\\@fcm.googleapis.com/fcm/send/abc",
    "https://fcm.googleapis.com\\@127.0.0.1/fcm/send/abc",
    "https://127.0.0.1%5C.fcm.googleapis.com/fcm/send/abc",
    "https://127.0.0.1%2efcm.googleapis.com/abc",
    "https://127.0.0.1\u3002fcm.googleapis.com/abc",
    "https://127.0.0.1\uff0efcm.googleapis.com/abc",
    "https://evil.example\u2024fcm.googleapis.com/abc",
    "https://127.0.0.1:443\\.fcm.googleapis.com/abc",
    "https://127.0.0.1#.fcm.googleapis.com/abc",
    "https://127.0.0.1?.fcm.googleapis.com/abc",
    "https://127.0.0.1/.fcm.googleapis.com/abc",
    "https://127.0.0.1;.fcm.googleapis.com/abc",
    "https://[::1].fcm.googleapis.com/abc",
    "https://fcm.googleapis.com@127.0.0.1/abc",
    "https://fcm.googleapis.com:@127.0.0.1/abc",
    "https://fcm.googleapis.com%40127.0.0.1/abc",
    "https://127.0.0.1\t.fcm.googleapis.com/abc",
    "https://127.0.0.1\n.fcm.googleapis.com/abc",
    "https:\\\\127.0.0.1\\.fcm.googleapis.com/abc",
    "https:/127.0.0.1/.fcm.googleapis.com",
    "//fcm.googleapis.com/abc",
    "https://xn--fcm-googleapis-com.evil.example/abc",
    "https://fcm.googleapis.com.127.0.0.1.nip.io/abc",
    "HTTPS://127.0.0.1\\.FCM.GOOGLEAPIS.COM/abc",
]


def _connects_to(endpoint: str) -> str | None:
    url = requests.Request("POST", endpoint).prepare().url
    return urlsplit(url).hostname


@pytest.mark.parametrize("endpoint", HOSTILE)
def test_a_url_the_parsers_read_differently_is_refused(endpoint):
    with pytest.raises(ValidationFailed):
        check_endpoint(endpoint, production=True, allowed=ALLOWED)
    if "\\" in endpoint or not endpoint.isascii():
        # In development a loopback host is let in: not one the parsers disagree about.
        with pytest.raises(ValidationFailed):
            check_endpoint(endpoint, production=False, allowed=ALLOWED)


@pytest.mark.parametrize("endpoint", HOSTILE)
@pytest.mark.parametrize("production", [True, False])
def test_whatever_is_accepted_is_delivered_to_an_allowed_host(endpoint, production):
    """The class: for any URL, accepted means the client connects to a push service (or, in
    development, a loopback host). Checked over each hostile URL's variants."""
    for variant in (endpoint, endpoint.replace("\\", "/"), endpoint.lower(), endpoint + "."):
        try:
            check_endpoint(variant, production=production, allowed=ALLOWED)
        except ValidationFailed:
            continue
        host = (_connects_to(variant) or "").rstrip(".")
        assert any(host == name or host.endswith("." + name) for name in ALLOWED) or (
            not production and host in ("127.0.0.1", "::1", "localhost")
        ), (variant, host)


@pytest.mark.parametrize(
    "url",
    [
        "https://fcm.googleapis.com/fcm/send/abc:def-ghi_jkl",
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk%2Bx",
        "https://FCM.googleapis.com./fcm/send/abc",
    ],
)
def test_a_push_service_url_is_taken_as_it_is(url):
    assert check_endpoint(url, production=True, allowed=ALLOWED) == url


@pytest.fixture
def endpoint():
    with push_endpoint.running() as server:
        yield server


def _answered_member(client, runtime, endpoint_url):
    """A member with push on and one subscription at ``endpoint_url``, stored as the server
    stores one (the row tagged), and a doctor's answer waiting to be announced."""
    team = care_team(runtime)
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    keys = push_endpoint.BrowserKeys().as_json(endpoint_url)["keys"]
    answer = client.put("/api/v1/me/notifications", json={"push": True}, headers=bearer(tokens))
    assert answer.status_code == 200, answer.get_json()
    with runtime.database.transaction() as session:
        session.add(
            PushSubscription(
                account_id=member.id,
                endpoint=endpoint_url,
                p256dh=_unb64(keys["p256dh"]),
                auth=_unb64(keys["auth"]),
                created_at=runtime.clock.now(),
            )
        )
    doctor = login(client, runtime, team.clinician)
    conversation = asked(client, tokens, "Is this rash shingles?")
    claim(client, doctor, conversation)
    reply = send(client, doctor, f"/api/v1/clinician/conversations/{conversation}/messages", "No.")
    assert reply.status_code == 201, reply.get_json()
    return member


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _audited(runtime, action):
    with runtime.database.transaction() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_a_stored_endpoint_the_rule_now_refuses_is_not_delivered_to(client, runtime, endpoint):
    """A row stored before the rule tightened: checked again before each delivery."""
    host_port = endpoint.base.removeprefix("http://")
    member = _answered_member(client, runtime, f"http://{host_port}\\.fcm.googleapis.com/p")

    result = NotifyWorker(runtime).run()

    assert endpoint.requests == []
    assert (result.sent, result.skipped) == (0, 1)
    with runtime.database.transaction() as session:
        assert session.scalars(select(PushSubscription)).all() == []
    (dropped,) = _audited(runtime, "notification.push_drop")
    assert dropped.subject_id == member.id
    assert json.loads(dropped.details) == {"reason": "endpoint_refused"}


def test_a_subscription_the_push_service_calls_gone_is_dropped_audited_and_not_sent(
    client, runtime, endpoint
):
    endpoint.gone = True
    member = _answered_member(client, runtime, f"{endpoint.base}/push/abc")

    result = NotifyWorker(runtime).run()

    assert len(endpoint.requests) == 1
    assert (result.sent, result.skipped) == (0, 1)
    (deliver,) = _audited(runtime, "notification.deliver")
    assert json.loads(deliver.details)["result"] == "skipped"  # nothing arrived anywhere
    (dropped,) = _audited(runtime, "notification.push_drop")
    assert dropped.subject_id == member.id
    assert json.loads(dropped.details) == {"reason": "push_service_410"}


def test_purging_delivered_rows_is_audited(client, runtime, endpoint, clock):
    _answered_member(client, runtime, f"{endpoint.base}/push/abc")
    assert NotifyWorker(runtime).run().sent == 1
    assert _audited(runtime, "notification.purge") == []

    clock.advance(days=31)
    assert NotifyWorker(runtime).run().purged == 1

    (purge,) = _audited(runtime, "notification.purge")
    details = json.loads(purge.details)
    assert details["purged"] == 1
    assert details["before"] == (clock.now() - timedelta(days=30)).isoformat().replace(
        "+00:00", "Z"
    )
