"""Several hosts, proven (issue 15): two servers on one PostgreSQL and one Redis.

Two app instances (``gunicorn -c deploy/gunicorn.conf.py wsgi:app``, each on a port of its
own, configured only through its environment) share a database made by Alembic, the rate
limiter's Redis and the key directory, as hosts of one deployment do; ``medchat`` commands run
as subprocesses with a host's environment. Shown here: a token issued by one host works on the
other and a logout on one ends it on both; a TOTP code spent on one is refused on the other;
the failure budgets are one budget across hosts; ``medchat retention run`` started on both at
once handles each expired conversation once; every acknowledged send under concurrent load
against both hosts (and its retry with the same ``Idempotency-Key`` on the other host) is
stored exactly once, in one gap-free sequence, and the audit chain verifies.

Runs where PostgreSQL and Redis are configured (``MEDCHAT_TEST_DATABASE_URL``,
``MEDCHAT_TEST_RATELIMIT_STORAGE_URI=redis://...``, as ``.ci/run`` sets them); skipped with
the reason otherwise. Bounded: every wait has a timeout, and the module takes about 30 s.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import select

from medchat.clock import SystemClock
from medchat.config import Settings
from medchat.models import AuditEntry, Conversation, Message
from medchat.services.context import ServiceContext, build_service_context
from tests.support.accounts import Person, make_member
from tests.support.clock import ManualClock
from tests.support.conversations import start_conversation
from tests.support.databases import PG_ENV, fresh_database
from tests.support.hosts import Host, finish, start_command, start_host
from tests.support.messaging import CONSENT_VERSION, care_team
from tests.support.sessions import sign_in

REDIS = os.environ.get("MEDCHAT_TEST_RATELIMIT_STORAGE_URI", "")

pytestmark = [
    pytest.mark.multihost,
    pytest.mark.skipif(
        not os.environ.get(PG_ENV) or not REDIS.startswith("redis"),
        reason="two hosts need PostgreSQL and Redis: set MEDCHAT_TEST_DATABASE_URL and "
        "MEDCHAT_TEST_RATELIMIT_STORAGE_URI=redis://... (as .ci/run does)",
    ),
]

TOKEN = "/api/v1/auth/token"
EXPIRED = 12
SENDERS, SENDS_EACH = 8, 10


@dataclass
class Deployment:
    a: Host
    b: Host
    settings: dict[str, str]
    runtime: ServiceContext
    #: The same deployment two years and a day ago (what retention finds expired now).
    past: ServiceContext
    expired: list[uuid.UUID]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("multihost")
    with fresh_database("postgresql", workdir) as url:
        settings = {
            "MEDCHAT_ENV": "development",
            "MEDCHAT_DATABASE_URL": url,
            "MEDCHAT_KEY_DIR": str(workdir / "keys"),
            "MEDCHAT_RATELIMIT_STORAGE_URI": REDIS,
            "MEDCHAT_RATELIMIT_KEY_PREFIX": f"medchat-multihost-{uuid.uuid4().hex}",
            "MEDCHAT_MAIL_URL": f"file://{workdir / 'mail'}",
            "MEDCHAT_STAFF_NETWORKS": "127.0.0.0/8,::1/128",
            "MEDCHAT_BCRYPT_ROUNDS": "4",
            "MEDCHAT_SCRYPT_LOG2_N": "10",
        }
        # The keys (generated once, as `medchat keys server-init` would) and the role keys
        # with their pins, made in-process before any host starts.
        runtime = build_service_context(Settings.from_env(settings), SystemClock())
        care_team(runtime)
        past = build_service_context(
            Settings.from_env(settings),
            ManualClock(SystemClock().now() - timedelta(days=731)),
        )
        old = sign_in(past, make_member(past)).principal
        expired = [
            start_conversation(past, old, subject=f"old #{n}", bodies=["Two years ago"]).id
            for n in range(EXPIRED)
        ]
        a = start_host("host-a", settings, workdir)
        b = start_host("host-b", settings, workdir)
        try:
            a.wait_ready()
            b.wait_ready()
            yield Deployment(a, b, settings, runtime, past, expired)
        finally:
            a.stop()
            b.stop()
            runtime.database.dispose()
            past.database.dispose()


def sign_in_on(host: Host, person: Person, code: str | None = None) -> Any:
    body = {"email": person.email, "password": person.password}
    if code is not None:
        body["totp_code"] = code
    return host.call("POST", TOKEN, body)


def test_a_token_from_one_host_works_on_the_other_and_logout_ends_it_on_both(hosts):
    member = make_member(hosts.runtime)
    signed = sign_in_on(hosts.a, member)
    assert signed.status == 200, signed.body
    tokens = signed.body
    assert hosts.b.call("GET", "/api/v1/me", token=tokens["access_token"]).status == 200
    # A refresh on B; the spent refresh token is dead on A too.
    refreshed = hosts.b.call(
        "POST", "/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status == 200, refreshed.body
    new = refreshed.body
    assert hosts.a.call("GET", "/api/v1/me", token=new["access_token"]).status == 200

    assert hosts.a.call("POST", "/api/v1/auth/logout", token=new["access_token"]).status == 204
    for host in (hosts.a, hosts.b):
        assert host.call("GET", "/api/v1/me", token=new["access_token"]).status == 401
    again = hosts.b.call("POST", "/api/v1/auth/refresh", {"refresh_token": new["refresh_token"]})
    assert again.status == 401


def test_a_totp_code_spent_on_one_host_is_refused_on_the_other(hosts):
    member = make_member(hosts.runtime, totp=True)
    assert member.totp_secret
    # The enrollment spent this step's code; the next step's is fresh (one step of drift).
    code = pyotp.TOTP(member.totp_secret).at(SystemClock().now() + timedelta(seconds=30))
    first = sign_in_on(hosts.a, member, code)
    assert first.status == 200, first.body
    replayed = sign_in_on(hosts.b, member, code)
    assert replayed.status == 401
    assert replayed.body["error"]["code"] == "invalid_mfa_code"


def test_failure_budgets_are_one_budget_across_hosts(hosts):
    """5 wrong passwords for one account from one address, spread over both hosts, spend the
    budget: per-process counting would have let host B see only two."""
    member = make_member(hosts.runtime)
    wrong = Person(member.id, member.email, "not-the-password-at-all", member.role)
    for host in (hosts.a, hosts.b, hosts.a, hosts.b, hosts.a):
        assert sign_in_on(host, wrong).status == 401
    refused = sign_in_on(hosts.b, member)  # the right password, on the other host
    assert refused.status == 429, refused.body
    assert int(refused.headers["Retry-After"]) > 0
    assert sign_in_on(hosts.a, member).status == 429


def test_retention_started_on_both_hosts_at_once_handles_each_item_once(hosts):
    runs = [
        start_command(hosts.settings, "retention", "run", "--json", "--batch", "1")
        for _ in (hosts.a, hosts.b)
    ]
    results = []
    for run in runs:
        status, out, err = finish(run)
        assert status == 0, err[-2000:]
        results.append(json.loads(out))
    assert sum(r["conversations_destroyed"] for r in results) == EXPIRED
    with hosts.runtime.database.transaction() as session:
        left = session.scalars(select(Conversation.id).where(Conversation.id.in_(hosts.expired)))
        assert list(left) == []
        destroyed = Counter(
            session.scalars(
                select(AuditEntry.target_id).where(AuditEntry.action == "retention.destroy")
            )
        )
    assert destroyed == Counter({str(c): 1 for c in hosts.expired})
    status, out, err = finish(start_command(hosts.settings, "retention", "run", "--json"))
    assert status == 0, err[-2000:]
    assert json.loads(out)["conversations_destroyed"] == 0


def test_every_acknowledged_send_against_both_hosts_is_stored_exactly_once(hosts):
    member = make_member(hosts.runtime)
    tokens = sign_in_on(hosts.b, member).body
    token = tokens["access_token"]
    consent = {"health_messaging": True, "version": CONSENT_VERSION}
    assert hosts.a.call("PUT", "/api/v1/me/consent", consent, token=token).status == 200
    asked = hosts.b.call(
        "POST",
        "/api/v1/conversations",
        {"body": "Question?", "emergency_notice": "2026-12"},
        token=token,
    )
    assert asked.status == 201, asked.body
    conversation = asked.body["id"]
    path = f"/api/v1/conversations/{conversation}/messages"

    acknowledged: dict[str, str] = {}  # message id -> body
    problems: list[str] = []
    lock = threading.Lock()

    def sender(n: int) -> None:
        for i in range(SENDS_EACH):
            first, other = (hosts.a, hosts.b) if (n + i) % 2 else (hosts.b, hosts.a)
            body = f"load {n}-{i}"
            key = {"Idempotency-Key": str(uuid.uuid4())}
            try:
                sent = first.call("POST", path, {"body": body}, token=token, headers=key)
                # The client never saw the answer, say, and retries on the other host.
                retried = other.call("POST", path, {"body": body}, token=token, headers=key)
            except OSError as exc:
                with lock:
                    problems.append(f"{n}-{i}: {exc!r}")
                continue
            with lock:
                if sent.status != 201 or retried.status != 201:
                    problems.append(f"{n}-{i}: {sent.status} then {retried.status}")
                    continue
                if retried.body["id"] != sent.body["id"]:
                    problems.append(f"{n}-{i}: the retry made {retried.body['id']}")
                acknowledged[sent.body["id"]] = body

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert problems == []
    assert len(acknowledged) == SENDERS * SENDS_EACH

    with hosts.runtime.database.transaction() as session:
        rows = session.execute(
            select(Message.id, Message.seq).where(
                Message.conversation_id == uuid.UUID(conversation)
            )
        ).all()
    stored = Counter(str(row.id) for row in rows)
    assert all(stored[m] == 1 for m in acknowledged)
    assert len(rows) == 1 + len(acknowledged)  # the question, and nothing unacknowledged
    assert sorted(row.seq for row in rows) == list(range(1, len(rows) + 1))
    # Read back through either host: every acknowledged body, once.
    bodies: Counter[str] = Counter()
    cursor = ""
    while True:
        page = hosts.a.call("GET", f"{path}?limit=100{cursor}", token=token).body
        bodies.update(item["body"] for item in page["items"])
        if not page["next_cursor"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert all(bodies[body] == 1 for body in acknowledged.values())

    status, out, err = finish(start_command(hosts.settings, "audit", "verify", "--json"))
    assert status == 0, (out + err)[-2000:]
    assert json.loads(out)["ok"] is True
