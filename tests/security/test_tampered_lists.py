"""One tampered conversation never breaks a list (issue 11, finding 9, and its class).

Someone who can write the database alters one of a member's two conversations through SQL:
its key-set tag, its key commitment, the bytes of its wraps, or its sealed subject. Every list
that opens several conversations must then answer 200 with the other conversation, show the
tampered one without content, and audit one ``conversation.integrity_refused`` entry for it
per request; reading the tampered conversation alone answers 409 ``key_integrity_failed``.

The lists are not named here: every ``GET`` route without URL parameters under ``/api`` and
``/console`` is called as a member, a clinician, a compliance officer and a console user, once
per value of each enumerated query parameter its OpenAPI description declares, and the ones
whose answer holds both conversations' subjects *are* the lists that open conversations. A new
list joins by itself; the test also checks that the lists known today are among them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from access_control.roles import Role
from medchat.models import AuditEntry, ConversationKeyWrap
from medchat.services.retrieval import RetrievalService
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.archive import flip_byte, seal
from tests.support.console import console_login
from tests.support.conversations import start_conversation
from tests.support.messaging import asked, care_team, give_consent
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql

REFUSED = "conversation.integrity_refused"
GOOD_SUBJECT = "Canary-intact-subject-7f3a"
TAMPERED_SUBJECT = "Canary-tampered-subject-91bd"
KNOWN_LISTS = {
    ("member", "/api/v1/conversations"),
    ("member", "/api/v1/me/export"),
    ("member", "/api/v1/me/export?format=fhir"),
    ("clinician", "/api/v1/clinician/queue"),
    ("clinician", "/api/v1/clinician/queue?status=open"),
    ("console", "/console/queue"),
}


@dataclass
class World:
    callers: dict[str, Any]
    good: str
    tampered: str
    #: Sign the console in again: ``GET /console/totp`` without a pending sign-in ends the
    #: session, and the sweep over every route calls it.
    console_login: Any


@pytest.fixture
def world(app, client, runtime) -> World:
    team = care_team(runtime)
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    good = asked(client, tokens, "First question", subject=GOOD_SUBJECT)
    runtime.clock.advance(seconds=5)
    tampered = asked(client, tokens, "Second question", subject=TAMPERED_SUBJECT)
    clinician = bearer(login(client, runtime, team.clinician))
    compliance = bearer(login(client, runtime, team.compliance))
    console = app.test_client()
    console_login(console, runtime, team.clinician)
    member_auth = bearer(tokens)
    return World(
        callers={
            "member": lambda path: client.get(path, headers=member_auth),
            "clinician": lambda path: client.get(path, headers=clinician),
            "compliance": lambda path: client.get(path, headers=compliance),
            "console": lambda path: console.get(path),
        },
        good=good,
        tampered=tampered,
        console_login=lambda: console_login(console, runtime, team.clinician),
    )


def _query_variants(openapi: dict[str, Any], rule: str) -> list[str]:
    """The plain path, then one query per value of each enumerated query parameter."""
    variants = [rule]
    operation = openapi.get("paths", {}).get(rule, {}).get("get", {})
    for parameter in operation.get("parameters", []):
        if parameter.get("in") != "query":
            continue
        for value in parameter.get("schema", {}).get("enum", []):
            variants.append(f"{rule}?{parameter['name']}={value}")
    return variants


def every_get_without_parameters(app, client) -> list[tuple[str, str]]:
    """(audience, path) for every parameterless GET route under /api and /console."""
    openapi = client.get("/api/v1/openapi.json").get_json()
    calls = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.arguments:
            continue
        if rule.rule.startswith("/console/"):
            audiences = ["console"]
        elif rule.rule.startswith("/api/"):
            audiences = ["member", "clinician", "compliance"]
        else:
            continue
        for path in _query_variants(openapi, rule.rule):
            calls += [(audience, path) for audience in audiences]
    return sorted(set(calls))


def refusals(runtime, conversation_id: str) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == REFUSED, AuditEntry.target_id == conversation_id)
        )


def _flip_wraps(runtime, conversation_id: uuid.UUID) -> None:
    with runtime.database.transaction() as session:
        wraps = list(
            session.scalars(
                select(ConversationKeyWrap.id).where(
                    ConversationKeyWrap.conversation_id == conversation_id
                )
            )
        )
    for wrap_id in wraps:
        flip_byte(runtime, "conversation_key_wraps", "wrap", wrap_id)


TAMPERINGS = {
    "key_tag": lambda runtime, cid: flip_byte(runtime, "conversations", "key_tag", cid),
    "commitment": lambda runtime, cid: flip_byte(runtime, "conversations", "key_commitment", cid),
    "wrap_bytes": _flip_wraps,
    "subject_ciphertext": lambda runtime, cid: flip_byte(
        runtime, "conversations", "subject_ciphertext", cid
    ),
}


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_every_list_serves_the_rest_when_one_conversation_is_tampered(
    app, client, runtime, world, tampering
):
    calls = every_get_without_parameters(app, client)
    lists = []
    for audience, path in calls:
        response = world.callers[audience](path)
        text = response.get_data(as_text=True)
        if response.status_code == 200 and GOOD_SUBJECT in text and TAMPERED_SUBJECT in text:
            lists.append((audience, path))
    assert set(lists) >= KNOWN_LISTS, sorted(lists)

    TAMPERINGS[tampering](runtime, uuid.UUID(world.tampered))
    world.console_login()

    for audience, path in lists:
        before = refusals(runtime, world.tampered)
        response = world.callers[audience](path)
        text = response.get_data(as_text=True)
        where = f"{audience} {path} after {tampering}"
        assert response.status_code == 200, f"{where}: {response.status_code} {text[:300]}"
        assert GOOD_SUBJECT in text, where
        assert TAMPERED_SUBJECT not in text, where
        assert "Traceback" not in text, where
        if response.is_json:  # listed as unavailable, not silently dropped
            assert world.tampered in text, where
        assert refusals(runtime, world.tampered) == before + 1, where
    assert refusals(runtime, world.good) == 0
    for audience, path in calls:
        status = world.callers[audience](path).status_code
        assert status != 500, f"{audience} {path} after {tampering}: 500"


def test_the_refused_item_is_listed_without_content(client, runtime, world):
    TAMPERINGS["key_tag"](runtime, uuid.UUID(world.tampered))

    member = world.callers["member"]("/api/v1/conversations").get_json()["items"]
    queue = world.callers["clinician"]("/api/v1/clinician/queue").get_json()["items"]
    export = world.callers["member"]("/api/v1/me/export").get_json()["conversations"]

    for items in (member, queue, export):
        by_id = {item["id"]: item for item in items}
        assert by_id[world.good]["readable"] is True
        assert by_id[world.good]["unavailable"] is None
        refused = by_id[world.tampered]
        assert (refused["readable"], refused["unavailable"]) == (False, "integrity_failed")
        assert refused["subject"] is None
    assert {item["id"]: item for item in export}[world.tampered]["messages"] == []
    assert {item["id"]: item for item in export}[world.tampered]["history_pending"] is False
    with runtime.database.transaction() as session:
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.action == REFUSED)))
    assert len(entries) == 3  # one per refused item per request
    for entry in entries:
        assert (entry.outcome, entry.target_type) == ("failed", "conversation")
        assert entry.details == '{"failure":"key","in":"list"}'
    # The queue audits reads only of what it showed.
    with runtime.database.transaction() as session:
        read = set(
            session.scalars(
                select(AuditEntry.target_id).where(AuditEntry.action == "content.read.queue")
            )
        )
    assert read == {world.good}


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_reading_the_tampered_conversation_alone_is_a_409(runtime, world, tampering):
    TAMPERINGS[tampering](runtime, uuid.UUID(world.tampered))
    cid = world.tampered
    reads = [
        ("member", f"/api/v1/conversations/{cid}"),
        ("clinician", f"/api/v1/clinician/conversations/{cid}"),
        ("console", f"/console/conversations/{cid}"),
    ]
    if tampering != "subject_ciphertext":  # the messages themselves are intact then
        reads += [
            ("member", f"/api/v1/conversations/{cid}/messages"),
            ("clinician", f"/api/v1/clinician/conversations/{cid}/messages"),
        ]
    for audience, path in reads:
        before = refusals(runtime, cid)
        response = world.callers[audience](path)
        assert response.status_code == 409, f"{audience} {path}: {response.status_code}"
        text = response.get_data(as_text=True)
        assert "Traceback" not in text and TAMPERED_SUBJECT not in text
        if response.is_json:
            assert response.get_json()["error"]["code"] == "key_integrity_failed"
        assert refusals(runtime, cid) == before + 1, f"{audience} {path}"
    # The intact conversation still reads.
    good = world.callers["member"](f"/api/v1/conversations/{world.good}")
    assert good.status_code == 200 and good.get_json()["subject"] == GOOD_SUBJECT


def test_the_queue_refuses_a_conversation_whose_physician_wraps_were_deleted(runtime, world):
    execute_sql(
        runtime,
        "DELETE FROM conversation_key_wraps WHERE conversation_id = :id AND holder = 'physician'",
        id=uuid.UUID(world.tampered),
    )
    response = world.callers["clinician"]("/api/v1/clinician/queue")
    assert response.status_code == 200
    items = {item["id"]: item for item in response.get_json()["items"]}
    assert items[world.good]["subject"] == GOOD_SUBJECT
    assert items[world.tampered]["unavailable"] == "integrity_failed"
    assert refusals(runtime, world.tampered) == 1


def test_one_tampered_retrieval_request_leaves_the_rest_of_the_compliance_list(runtime):
    """The compliance list opens each request's sealed justification: one altered through SQL
    is left out and audited, the other is listed."""
    team = care_team(runtime)
    member = sign_in(runtime, make_member(runtime)).principal
    officer = sign_in(runtime, team.compliance).principal
    colleague = sign_in(runtime, make_staff(runtime, Role.COMPLIANCE)).principal
    requests = []
    for subject in ("one", "two"):
        started = start_conversation(runtime, member, subject=subject, bodies=["hello"])
        record = seal(runtime, member, started.id)
        with runtime.database.transaction() as session:
            service = RetrievalService(session, runtime)
            justification = "A court order names this conversation, reference 42."
            requests.append(service.request(officer, record.id, justification).id)
    flip_byte(runtime, "retrieval_requests", "justification_ciphertext", requests[1])

    with runtime.database.transaction() as session:
        page = RetrievalService(session, runtime).list_requests(colleague, limit=10)

    assert [item.id for item in page.items] == [requests[0]]
    with runtime.database.transaction() as session:
        (entry,) = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "retrieval.integrity_refused")
        )
    assert (entry.target_type, entry.target_id, entry.outcome) == (
        "retrieval",
        str(requests[1]),
        "failed",
    )
