"""The member's export (API.md ``GET /api/v1/me/export``; docs/data-rights.md "Access and
portability"): JSON, or a FHIR R4 Bundle validated with ``fhir.resources`` (R4, 4.0.1)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest
from fhir.resources import __fhir_version__ as FHIR_MODELS_VERSION
from fhir.resources.bundle import Bundle
from fhir.resources.communication import Communication
from fhir.resources.consent import Consent
from fhir.resources.patient import Patient
from sqlalchemy import event, select

from medchat import audit
from medchat.models import AuditEntry
from medchat.schemas.fhir_bundle import RETENTION_EXTENSION
from medchat.services.export import ExportService
from tests.support.accounts import bearer, login
from tests.support.messaging import CONVERSATIONS, asked, consent_texts, send
from tests.support.reset_history import a_member_after_reset
from tests.support.rights import (
    ANSWER,
    EXPORT,
    FILE_NAME,
    FILE_STORED,
    FOLLOW_UP,
    OTHERS_QUESTION,
    QUESTION,
    SECOND_QUESTION,
    SUBJECT,
    a_member_with_history,
)
from tests.support.sessions import attached, sign_in


@pytest.fixture
def history(client, runtime):
    return a_member_with_history(client, runtime)


def export(client, auth, query: str = ""):
    response = client.get(EXPORT + query, headers=auth)
    assert response.status_code == 200, response.get_json()
    return response


def test_the_models_used_to_validate_are_fhir_r4():
    assert FHIR_MODELS_VERSION == "4.0.1"


def test_the_json_export_holds_profile_consents_and_every_live_conversation(client, history):
    response = export(client, history.auth)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    assert response.mimetype == "application/json"
    data = response.get_json()
    assert set(data) == {
        "exported_at",
        "profile",
        "consents",
        "conversations",
        "restrictions",
        "kept_after_deletion",
        "notifications",
    }
    me = client.get("/api/v1/me", headers=history.auth).get_json()
    assert data["profile"] == me
    assert [(c["purpose"], c["version"], c["withdrawn_at"]) for c in data["consents"]] == [
        ("health_messaging", "2026-01", None)
    ]

    by_id = {c["id"]: c for c in data["conversations"]}
    assert list(by_id) == [history.answered_id, history.closed_id]  # oldest first
    answered, closed = by_id[history.answered_id], by_id[history.closed_id]
    # The member wrote last (the follow-up), so the conversation waits for a doctor again.
    assert answered["subject"] == SUBJECT and answered["status"] == "open"
    assert answered["readable"] is True and answered["history_pending"] is False
    assert closed["status"] == "closed" and closed["closed_at"] is not None
    assert [m["body"] for m in closed["messages"]] == [SECOND_QUESTION]

    first, reply, follow_up, upload = answered["messages"]
    assert (first["author"], first["author_name"], first["body"]) == ("member", None, QUESTION)
    assert (reply["author"], reply["author_name"], reply["body"]) == ("clinician", "Dr. M.", ANSWER)
    assert (follow_up["body"], follow_up["attachments"]) == (FOLLOW_UP, [])
    # An upload is a message of its own, with an empty body.
    assert upload["body"] == ""
    (attachment,) = upload["attachments"]
    assert attachment == {
        "id": history.attachment_id,
        "filename": FILE_NAME,
        "content_type": "application/pdf",
        "size": len(FILE_STORED),
    }
    # The same messages the member reads in the app, in the same order.
    page = client.get(
        f"{CONVERSATIONS}/{history.answered_id}/messages?order=asc", headers=history.auth
    ).get_json()["items"]
    assert [m["id"] for m in page] == [m["id"] for m in answered["messages"]]


def test_the_export_names_no_staff_member_and_nothing_of_another_member(client, history):
    text = export(client, history.auth).get_data(as_text=True)
    for absent in (
        history.team.clinician.email,
        str(history.team.clinician.id),
        history.other.email,
        str(history.other.id),
        history.others_id,
        OTHERS_QUESTION,
        "Otherperson",
    ):
        assert absent not in text
    fhir = export(client, history.auth, "?format=fhir").get_data(as_text=True)
    for absent in (history.team.clinician.email, str(history.team.clinician.id), OTHERS_QUESTION):
        assert absent not in fhir


def test_sealed_conversations_are_not_exported(client, history):
    assert client.delete(f"{CONVERSATIONS}/{history.closed_id}", headers=history.auth).status_code
    data = export(client, history.auth).get_json()
    assert [c["id"] for c in data["conversations"]] == [history.answered_id]
    assert SECOND_QUESTION not in json.dumps(data)


def test_withdrawn_and_regranted_consents_are_all_in_the_history(
    client, runtime, history, make_app, tmp_path
):
    assert client.delete("/api/v1/me/consent", headers=history.auth).status_code == 204
    runtime.clock.advance(minutes=1)
    # The insurer publishes a new text; the member agrees to it.
    client = make_app(
        consent_version="2026-07", consent_text_dir=consent_texts(tmp_path, "2026-07")
    ).test_client()
    regrant = {"health_messaging": True, "version": "2026-07"}
    assert client.put("/api/v1/me/consent", json=regrant, headers=history.auth).status_code == 200
    consents = export(client, history.auth).get_json()["consents"]
    assert [c["version"] for c in consents] == ["2026-01", "2026-07"]
    assert consents[0]["withdrawn_at"] is not None and consents[1]["withdrawn_at"] is None

    # Both decisions are in the FHIR export too, as Consent resources.
    bundle = Bundle.parse_obj(export(client, history.auth, "?format=fhir").get_json())
    found = [e.resource for e in bundle.entry if isinstance(e.resource, Consent)]
    assert [(c.status, c.policyRule.coding[0].code) for c in found] == [
        ("inactive", "health_messaging/2026-01"),
        ("active", "health_messaging/2026-07"),
    ]
    patient_url = f"urn:uuid:{history.member.id}"
    assert {c.patient.reference for c in found} == {patient_url}
    first, second = found
    withdrawn = datetime.fromisoformat(consents[0]["withdrawn_at"].replace("Z", "+00:00"))
    assert first.provision.period.end == withdrawn
    assert second.provision.period.start == withdrawn + timedelta(minutes=1)
    assert second.provision.period.end is None
    # The same grant keeps its id from one export to the next.
    again = Bundle.parse_obj(export(client, history.auth, "?format=fhir").get_json())
    assert [e.resource.id for e in again.entry if isinstance(e.resource, Consent)] == [
        c.id for c in found
    ]


def test_the_export_says_what_an_erasure_keeps_why_and_for_how_long(make_app):
    client = make_app(archive_retention_days=4000).test_client()
    runtime = client.application.extensions["medchat"]
    history = a_member_with_history(client, runtime)
    kept = export(client, history.auth).get_json()["kept_after_deletion"]
    by_kind = {item["kept"]: item for item in kept}
    assert list(by_kind) == [
        "sealed_archive",
        "consent_history",
        "audit_trail",
        "account_tombstone",
    ]
    archive = by_kind["sealed_archive"]
    assert archive["retention_days"] == 4000 and "4000 days" in archive["how_long"]
    assert "court" in archive["why"] and "encrypted" in archive["what"]
    assert all(item["why"] and item["what"] and item["how_long"] for item in kept)

    raw = export(client, history.auth, "?format=fhir").get_json()
    patient = next(
        e["resource"] for e in raw["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    assert Patient.parse_obj(patient).extension is not None
    statements = [x for x in patient["extension"] if x["url"] == RETENTION_EXTENSION]
    assert len(statements) == 4
    parts = {p["url"]: p for p in statements[0]["extension"]}
    assert parts["kept"]["valueCode"] == "sealed_archive"
    assert parts["period"]["valueDuration"] == {
        "value": 4000,
        "unit": "d",
        "system": "http://unitsofmeasure.org",
        "code": "d",
    }
    assert parts["why"]["valueString"] == archive["why"]
    # Records kept as long as others are carry no fixed period.
    assert "period" not in {p["url"] for p in statements[1]["extension"]}


def test_a_conversation_waiting_for_its_rewrap_is_listed_as_pending(make_app, tmp_path):
    before = a_member_after_reset(make_app(mail_url=f"file://{tmp_path}"), tmp_path)
    client, runtime = before.client, before.runtime
    auth = bearer(login(client, runtime, before.member))
    fresh = asked(client, {"access_token": auth["Authorization"][7:]}, "After the reset.")

    data = export(client, auth).get_json()
    by_id = {c["id"]: c for c in data["conversations"]}
    assert set(by_id) == {*before.histories, fresh}
    for cid in before.histories:
        item = by_id[cid]
        assert item["readable"] is False and item["history_pending"] is True
        assert item["subject"] is None and item["messages"] == []
        assert item["status"] == before.listed[cid]["status"]
    assert by_id[fresh]["history_pending"] is False
    assert [m["body"] for m in by_id[fresh]["messages"]] == ["After the reset."]

    bundle = Bundle.parse_obj(export(client, auth, "?format=fhir").get_json())
    pending = [e.resource for e in bundle.entry if e.resource.resource_type == "Communication"]
    unknown = [c for c in pending if c.status == "unknown"]
    assert sorted(c.id for c in unknown) == sorted(before.histories)
    assert all(c.payload is None and c.statusReason.text for c in unknown)


def test_the_fhir_export_is_a_valid_r4_collection_bundle(client, history):
    response = export(client, history.auth, "?format=fhir")
    assert response.mimetype == "application/fhir+json"
    assert response.headers["Cache-Control"] == "no-store"
    assert "attachment" in response.headers["Content-Disposition"]
    raw = response.get_json()
    bundle = Bundle.parse_obj(raw)
    assert bundle.type == "collection"
    resources = [entry.resource for entry in bundle.entry]
    patients = [r for r in resources if isinstance(r, Patient)]
    messages = [r for r in resources if isinstance(r, Communication)]
    consents = [r for r in resources if isinstance(r, Consent)]
    assert len(patients) == 1 and len(messages) == 5 and len(consents) == 1
    assert len(resources) == 7
    (granted,) = consents
    assert granted.status == "active" and granted.provision.type == "permit"
    assert granted.policyRule.coding[0].code == "health_messaging/2026-01"
    # Every entry is addressable within the bundle, and every reference resolves in it.
    full_urls = {entry.fullUrl for entry in bundle.entry}
    assert len(full_urls) == len(bundle.entry)
    (patient,) = patients
    patient_url = f"urn:uuid:{history.member.id}"
    assert patient_url in full_urls

    assert patient.name[0].family == "Durand" and patient.name[0].given == ["Camille"]
    assert patient.gender == "female" and patient.birthDate.isoformat() == "1988-04-12"
    telecom = {(t.system, t.value) for t in patient.telecom}
    assert telecom == {("phone", "+33 6 12 34 56 78"), ("email", history.member.email)}
    (identifier,) = patient.identifier
    assert identifier.value == "FR-0000-1" and identifier.type.coding[0].code == "MB"

    bodies = []
    for message in messages:
        assert message.status == "completed"
        assert message.subject.reference == patient_url
        assert message.sent is not None
        bodies += [p.contentString for p in message.payload if p.contentString]
        for reference in message.inResponseTo or []:
            assert reference.reference in full_urls
    assert sorted(bodies) == sorted([QUESTION, ANSWER, FOLLOW_UP, SECOND_QUESTION])
    reply = next(m for m in messages if m.payload[0].contentString == ANSWER)
    assert reply.sender.display == "Dr. M." and reply.sender.reference is None
    assert reply.recipient[0].reference == patient_url
    question = next(m for m in messages if m.payload[0].contentString == QUESTION)
    assert question.sender.reference == patient_url and question.topic.text == SUBJECT
    follow_up = next(m for m in messages if m.payload[0].contentString == FOLLOW_UP)
    upload = next(m for m in messages if m.payload[0].contentAttachment is not None)
    (part,) = upload.payload
    attachment = part.contentAttachment
    assert attachment.id == history.attachment_id
    assert (attachment.title, attachment.contentType, attachment.size) == (
        FILE_NAME,
        "application/pdf",
        len(FILE_STORED),
    )
    assert attachment.data is None and attachment.url is None
    # The thread survives: the answer responds to the question, the follow-up to the answer.
    assert reply.inResponseTo[0].reference == f"urn:uuid:{question.id}"
    assert follow_up.inResponseTo[0].reference == f"urn:uuid:{reply.id}"
    assert upload.inResponseTo[0].reference == f"urn:uuid:{follow_up.id}"


def test_a_member_with_sparse_details_gives_a_valid_patient(client, runtime):
    from tests.support.accounts import make_member

    member = make_member(runtime, phone=None, insurance_number=None, sex="unknown")
    auth = bearer(login(client, runtime, member))
    bundle = Bundle.parse_obj(export(client, auth, "?format=fhir").get_json())
    (entry,) = bundle.entry
    assert entry.resource.gender == "unknown"
    assert entry.resource.identifier is None
    assert [t.system for t in entry.resource.telecom] == ["email"]


@pytest.mark.parametrize("query", ["?format=xml", "?format=", "?format=FHIR", "?format=json,fhir"])
def test_an_unknown_format_is_422(client, history, query):
    response = client.get(EXPORT + query, headers=history.auth)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"


def test_each_export_is_audited_with_the_member_as_subject(client, runtime, history):
    export(client, history.auth)
    export(client, history.auth, "?format=fhir")
    with runtime.database.transaction() as session:
        entries = list(
            session.scalars(select(AuditEntry).where(AuditEntry.action == "member.export"))
        )
        assert audit.verify(session, runtime.keys.audit_mac).ok
    assert [json.loads(e.details)["format"] for e in entries] == ["json", "fhir"]
    for entry in entries:
        assert entry.subject_id == history.member.id and entry.actor_id == history.member.id
        assert json.loads(entry.details)["conversations"] == 2
        assert SUBJECT not in entry.details and "Durand" not in entry.details


def test_the_export_opens_each_key_once_and_reads_no_row_per_message(client, runtime, history):
    def count_statements(extra_messages: int) -> int:
        for n in range(extra_messages):
            path = f"{CONVERSATIONS}/{history.answered_id}/messages"
            assert send(client, history.tokens, path, f"more {n}").status_code == 201
        principal = sign_in(runtime, history.member).principal
        seen: list[str] = []
        opened: list[uuid.UUID] = []
        keys = runtime.conversation_keys

        def spy(session):
            custody = keys(session)
            original = custody.open_key

            def open_key(conversation, *args, **kwargs):
                opened.append(conversation.id)
                return original(conversation, *args, **kwargs)

            custody.open_key = open_key
            return custody

        engine = runtime.database.engine
        listener = lambda *args: seen.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        object.__setattr__(runtime, "conversation_keys", spy)
        try:
            with runtime.database.transaction() as session:
                attached(principal, session)
                ExportService(session, runtime).export(principal)
        finally:
            object.__setattr__(runtime, "conversation_keys", keys)
            event.remove(engine, "before_cursor_execute", listener)
        assert sorted(opened) == sorted(
            uuid.UUID(c) for c in (history.answered_id, history.closed_id)
        )
        return len(seen)

    assert count_statements(0) == count_statements(25)
