"""Restriction of processing and objection (docs/data-rights.md, "Restriction and
objection"; issue 16 item 6): frozen conversations, the doctor's one exception, the history
in the access log and both exports, and a planted restriction refused."""

from __future__ import annotations

import io
import json

import pytest
from fhir.resources.bundle import Bundle
from fhir.resources.consent import Consent
from sqlalchemy import select, text

from medchat.models import AuditEntry, Conversation, Message
from tests.support.messaging import CONVERSATIONS, ask, asked, count, give_consent, send
from tests.support.rights import ACCESS_LOG, CLINICIAN, EXPORT, a_member_with_history

RESTRICTION = "/api/v1/me/restriction"
OBJECTION = "/api/v1/me/objection"


@pytest.fixture
def history(client, runtime):
    return a_member_with_history(client, runtime)


def _restrict(client, auth):
    response = client.post(RESTRICTION, headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _code(response) -> str:
    return response.get_json()["error"]["code"]


def test_a_restriction_freezes_the_members_conversations(client, runtime, history):
    auth, doctor = history.auth, history.doctor_auth
    assert client.get(RESTRICTION, headers=auth).get_json() == {
        "restricted": False,
        "ground": None,
        "since": None,
    }
    state = _restrict(client, auth)
    assert state["restricted"] is True and state["ground"] == "member_request"
    assert _restrict(client, auth) == state  # asking again changes nothing
    before = (count(runtime, Conversation), count(runtime, Message))

    # The member reads and exports everything, but adds nothing.
    assert client.get(CONVERSATIONS, headers=auth).status_code == 200
    messages = f"{CONVERSATIONS}/{history.answered_id}/messages"
    assert client.get(messages, headers=auth).status_code == 200
    assert client.get(EXPORT, headers=auth).status_code == 200
    refused = [
        ask(client, history.tokens, "A new question"),
        send(client, history.tokens, messages, "One more thing"),
        client.post(
            f"{CONVERSATIONS}/{history.answered_id}/attachments",
            headers=auth,
            data={"file": (io.BytesIO(b"%PDF-1.4\n"), "x.pdf", "application/pdf")},
            content_type="multipart/form-data",
        ),
    ]
    for response in refused:
        assert (response.status_code, _code(response)) == (403, "processing_restricted")

    # A doctor reads nothing but the question still waiting for its answer...
    closed = f"{CLINICIAN}/conversations/{history.closed_id}"
    for path in (closed, f"{closed}/messages"):
        response = client.get(path, headers=doctor)
        assert (response.status_code, _code(response)) == (403, "processing_restricted")
    queue = client.get(f"{CLINICIAN}/queue?status=closed", headers=doctor).get_json()
    assert history.closed_id not in [item["id"] for item in queue["items"]]
    open_case = f"{CLINICIAN}/conversations/{history.answered_id}"
    assert client.get(f"{open_case}/messages", headers=doctor).status_code == 200
    assert (count(runtime, Conversation), count(runtime, Message)) == before
    # ...and may answer it; once answered, it is frozen for them too.
    reply = client.post(f"{open_case}/messages", json={"body": "Rest it."}, headers=doctor)
    assert reply.status_code == 201
    again = client.get(f"{open_case}/messages", headers=doctor)
    assert (again.status_code, _code(again)) == (403, "processing_restricted")
    answered = client.get(f"{CLINICIAN}/queue?status=answered", headers=doctor).get_json()
    assert history.answered_id not in [item["id"] for item in answered["items"]]

    # Lifted: everything as before.
    assert client.delete(RESTRICTION, headers=auth).status_code == 204
    assert client.get(RESTRICTION, headers=auth).get_json()["restricted"] is False
    assert client.get(f"{closed}/messages", headers=doctor).status_code == 200
    assert ask(client, history.tokens, "A new question").status_code == 201


def test_restriction_and_lift_are_audited_logged_and_exported(client, runtime, history):
    _restrict(client, history.auth)
    runtime.clock.advance(minutes=3)
    assert client.delete(RESTRICTION, headers=history.auth).status_code == 204
    assert client.delete(RESTRICTION, headers=history.auth).status_code == 204  # nothing to lift

    with runtime.database.transaction() as session:
        entries = list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.startswith("privacy."))
                .order_by(AuditEntry.seq)
            )
        )
    assert [e.action for e in entries] == ["privacy.restrict", "privacy.restriction_lift"]
    assert {(e.subject_id, e.actor_id) for e in entries} == {(history.member.id,) * 2}
    assert json.loads(entries[0].details) == {"ground": "member_request", "by": "member"}

    log = client.get(ACCESS_LOG, headers=history.auth).get_json()["items"]
    mine = [(item["action"], item["actor"]) for item in log if item["actor"] == "you"]
    assert mine == [("lift_restriction", "you"), ("restrict", "you")]

    (record,) = client.get(EXPORT, headers=history.auth).get_json()["restrictions"]
    assert record["ground"] == "member_request" and record["requested_by"] == "member"
    assert record["lifted_at"] is not None and record["lifted_by"] == "member"
    bundle = Bundle.parse_obj(client.get(EXPORT + "?format=fhir", headers=history.auth).get_json())
    denials = [
        e.resource
        for e in bundle.entry
        if isinstance(e.resource, Consent) and e.resource.provision.type == "deny"
    ]
    assert [(c.status, c.policyRule.coding[0].code) for c in denials] == [
        ("inactive", "restriction/member_request")
    ]


def test_an_objection_withdraws_consent_and_restricts_until_lifted(client, runtime, history):
    response = client.post(OBJECTION, headers=history.auth)
    assert response.status_code == 200
    assert response.get_json()["ground"] == "objection"
    consent = client.get("/api/v1/me/consent", headers=history.auth).get_json()
    assert consent["health_messaging"]["granted"] is False
    refused = client.get(
        f"{CLINICIAN}/conversations/{history.closed_id}", headers=history.doctor_auth
    )
    assert _code(refused) == "processing_restricted"
    log = client.get(ACCESS_LOG, headers=history.auth).get_json()["items"]
    assert ("object", "you") in [(item["action"], item["actor"]) for item in log]

    # Lifting ends the restriction; consent stays withdrawn until the member gives it again.
    assert client.delete(RESTRICTION, headers=history.auth).status_code == 204
    question = ask(client, history.tokens, "A new question")
    assert (question.status_code, _code(question)) == (403, "consent_required")
    give_consent(client, history.tokens)
    assert asked(client, history.tokens, "A new question")
    (record,) = client.get(EXPORT, headers=history.auth).get_json()["restrictions"]
    assert record["ground"] == "objection"


def test_a_restriction_planted_in_the_database_is_refused_not_obeyed(client, runtime, history):
    with runtime.database.transaction() as session:
        session.execute(
            text(
                "INSERT INTO processing_restrictions (id, account_id, ground, requested_by,"
                " restricted_at) VALUES (:id, :account, 'member_request', 'member', :at)"
            ),
            {
                "id": "0" * 31 + "1",
                "account": history.member.id.hex,
                "at": runtime.clock.now().replace(tzinfo=None),
            },
        )
    response = client.get(
        f"{CLINICIAN}/conversations/{history.closed_id}", headers=history.doctor_auth
    )
    assert (response.status_code, _code(response)) == (409, "row_integrity_failed")
    # The open question is read without looking at restrictions: still served.
    open_case = f"{CLINICIAN}/conversations/{history.answered_id}/messages"
    assert client.get(open_case, headers=history.doctor_auth).status_code == 200


def test_staff_cannot_restrict(client, history):
    for method in ("get", "post", "delete"):
        response = getattr(client, method)(RESTRICTION, headers=history.doctor_auth)
        assert response.status_code == 403
    assert client.post(OBJECTION, headers=history.doctor_auth).status_code == 403
