"""The clinician API (API.md "Clinician"; SECURITY-MODEL "Who uses it", "Audit").

A clinician works the queue and answers; of the patient they see exactly a per-conversation
pseudonym, first name, birth date and sex. Every read of content is audited with the member
as subject. Admins and compliance officers see no content; a clinician whose session holds no
physician role key is told so.
"""

from __future__ import annotations

import io
import re
import uuid

import pytest
from flask import url_for
from sqlalchemy import select

from access_control.roles import Role
from medchat.models import AuditEntry, Conversation, Message
from tests.support import sample_files as files
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.messaging import (
    CONVERSATIONS,
    asked,
    care_team,
    claim,
    count,
    give_consent,
    send,
)

QUEUE = "/api/v1/clinician/queue"
CASES = "/api/v1/clinician/conversations"
CANARIES = {
    "last_name": "Zzyzxcanary",
    "email": "canary.zzyzx@example.org",
    "phone": "+33 9 87 65 43 21",
    "insurance_number": "INS-CANARY-7731",
}
PATIENT_KEYS = {"pseudonym", "first_name", "birth_date", "sex"}


@pytest.fixture
def team(runtime):
    return care_team(runtime)


@pytest.fixture
def member(runtime):
    return make_member(runtime, first_name="Noor", **CANARIES)


@pytest.fixture
def patient(client, runtime, member, team):
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    return tokens


@pytest.fixture
def doctor(client, runtime, team):
    return login(client, runtime, team.clinician)


def _queue(client, tokens, status: str = "open", **params) -> dict:
    query = "&".join(f"{k}={v}" for k, v in {"status": status, **params}.items())
    response = client.get(f"{QUEUE}?{query}", headers=bearer(tokens))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _ids(page: dict) -> list[str]:
    return [item["id"] for item in page["items"]]


def _routes(app, *blueprints: str) -> set[tuple[str, str]]:
    """Every (method, rule) of the named blueprints, read from the app itself."""
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] in blueprints
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def _clinician_routes(app) -> set[tuple[str, str]]:
    return _routes(app, "clinician")


def _clinician_facing_routes(app) -> set[tuple[str, str]]:
    """The clinician blueprint, and the clinician's attachment routes (their own blueprint)."""
    return _clinician_routes(app) | {
        route for route in _routes(app, "attachments") if route[1].startswith("/api/v1/clinician/")
    }


def _body(rule: str) -> dict:
    """A valid body for a route of the clinician or member conversations."""
    if rule.endswith("/handoff"):
        return {"to": str(uuid.uuid4()), "reason": "workload"}
    if "/templates" in rule:
        return {"title": "t", "body": "x"}
    return {"body": "x"}


def _uploads_with_the_canaries(client, tokens, conversation_id: str) -> list[str]:
    """The member sends files named after them and carrying their identity in metadata."""
    last_name = CANARIES["last_name"]
    uploads = [
        (files.photo_jpeg(last_name, orientation=6), f"{last_name}_rash.jpg"),
        (files.photo_png(last_name), f"{CANARIES['insurance_number']}.png"),
        (files.pdf_with_metadata(last_name), f"{last_name}_bloodwork.pdf"),
        (files.photo_heic(last_name), f"{CANARIES['phone']}.heic"),
    ]
    ids = []
    for data, name in uploads:
        response = client.post(
            f"/api/v1/conversations/{conversation_id}/attachments",
            headers=bearer(tokens),
            data={"file": (io.BytesIO(data), name, "application/octet-stream")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 201, response.get_json()
        ids.append(response.get_json()["id"])
    return ids


def test_queue_filters_by_status_and_follows_every_transition(client, runtime, patient, doctor):
    first = asked(client, patient, "First question", subject="Cough")
    runtime.clock.advance(seconds=5)
    second = asked(client, patient, "Second question", subject="Sleep")

    assert _ids(_queue(client, doctor)) == [first, second]  # oldest waiting first
    case = _queue(client, doctor)["items"][0]
    assert set(case) == {
        "id",
        "subject",
        "status",
        "created_at",
        "last_message_at",
        "status_since",
        "patient",
        "readable",
        "unavailable",
        "in_review",
        "claim",
        "unread_count",
        "read_through",
        "read_by_other_through",
        "urgent",
        "overdue",
    }
    assert case["readable"] is True and case["unavailable"] is None
    assert case["in_review"] is False and case["claim"] is None
    assert case["unread_count"] == 1 and case["read_through"] is None
    assert case["subject"] == "Cough" and case["status"] == "open"
    assert case["patient"]["first_name"] == "Noor"
    assert case["patient"]["birth_date"] == "1988-04-12" and case["patient"]["sex"] == "female"

    invalid = client.post(f"{CASES}/{first}/messages", json={"body": " "}, headers=bearer(doctor))
    assert invalid.status_code == 422 and "body" in invalid.get_json()["error"]["details"]

    # open -> answered on a reply (the doctor claims it first)
    runtime.clock.advance(seconds=5)
    claim(client, doctor, first)
    reply = send(client, doctor, f"{CASES}/{first}/messages", "Drink warm water.")
    assert reply.status_code == 201
    assert reply.get_json()["author"] == "clinician"
    assert reply.get_json()["author_name"] == "Dr. M."
    assert _ids(_queue(client, doctor)) == [second]
    assert _ids(_queue(client, doctor, "answered")) == [first]

    # answered -> open on the member's follow-up (now the most recent waiting)
    runtime.clock.advance(seconds=5)
    assert (
        send(client, patient, f"{CONVERSATIONS}/{first}/messages", "Still coughing").status_code
        == 201
    )
    assert _ids(_queue(client, doctor)) == [second, first]
    assert _ids(_queue(client, doctor, "answered")) == []

    # -> closed; then nobody can write, and closing again is a conflict too
    runtime.clock.advance(seconds=5)
    closed = client.post(f"{CASES}/{first}/close", headers=bearer(doctor))
    assert closed.status_code == 200 and closed.get_json() == {"status": "closed"}
    assert _ids(_queue(client, doctor, "closed")) == [first]
    assert _ids(_queue(client, doctor)) == [second]
    for response in (
        send(client, doctor, f"{CASES}/{first}/messages", "Too late"),
        send(client, patient, f"{CONVERSATIONS}/{first}/messages", "Too late"),
        client.post(f"{CASES}/{first}/close", headers=bearer(doctor)),
    ):
        assert response.status_code == 409
        assert response.get_json()["error"]["code"] == "conflict"
    assert count(runtime, Message) == 4
    with runtime.database.transaction() as session:
        row = session.get(Conversation, uuid.UUID(first))
        assert row.status == "closed" and row.closed_at is not None
        assert row.status_since == row.closed_at  # Conversation.enter: the closed list's order


def test_queue_pages_walk_every_conversation_once_in_the_documented_order(
    client, runtime, patient, doctor
):
    ids = []
    for n in range(5):
        if n % 2:
            runtime.clock.advance(seconds=1)
        ids.append(asked(client, patient, f"Question {n}"))
    for conversation_id in ids[:3]:
        runtime.clock.advance(seconds=1)
        claim(client, doctor, conversation_id)
        send(client, doctor, f"{CASES}/{conversation_id}/messages", "Answer")

    def walk(status: str) -> list[dict]:
        items, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = _queue(client, doctor, status, **params)
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items

    open_items, answered = walk("open"), walk("answered")
    assert sorted(_ids({"items": open_items})) == sorted(ids[3:])
    assert sorted(_ids({"items": answered})) == sorted(ids[:3])
    open_keys = [(c["status_since"], c["id"]) for c in open_items]
    answered_keys = [(c["status_since"], c["id"]) for c in answered]
    assert open_keys == sorted(open_keys)  # oldest waiting first
    assert answered_keys == sorted(answered_keys, reverse=True)  # most recent first

    for query in ("status=pending", "limit=0", "limit=101", "cursor=garbage!"):
        response = client.get(f"{QUEUE}?{query}", headers=bearer(doctor))
        assert response.status_code == 422, query


def test_pseudonyms_are_per_conversation_and_stable(client, runtime, patient, doctor):
    first = asked(client, patient, "One")
    second = asked(client, patient, "Two")
    queued = {c["id"]: c["patient"]["pseudonym"] for c in _queue(client, doctor)["items"]}
    assert set(queued) == {first, second}
    assert queued[first] != queued[second]
    for conversation_id, pseudonym in queued.items():
        assert re.fullmatch(r"P-[A-Z2-7]{8}", pseudonym)
        case = client.get(f"{CASES}/{conversation_id}", headers=bearer(doctor)).get_json()
        assert case["patient"]["pseudonym"] == pseudonym
        assert set(case["patient"]) == PATIENT_KEYS


def test_no_clinician_answer_reveals_contact_data_or_the_member_id(
    app, client, runtime, member, patient, doctor
):
    conversation_id = asked(client, patient, "Question one", subject="Subject one")
    other_id = asked(client, patient, "Question two")
    attachment_ids = _uploads_with_the_canaries(client, patient, conversation_id)
    canaries = [*CANARIES.values(), str(member.id), member.id.hex, member.email]
    called: set[tuple[str, str]] = set()

    def call(method: str, endpoint: str, query: str = "", files=None, **json) -> None:
        with app.test_request_context():
            path = url_for(endpoint, **json.pop("path_args", {}))
        (rule,) = [r for r in app.url_map.iter_rules(endpoint)]
        called.add((method, rule.rule))
        response = client.open(
            path + query,
            method=method,
            json=json or None,
            data=files,
            headers=bearer(doctor),
            content_type="multipart/form-data" if files else None,
        )
        assert response.status_code < 500
        # Bytes as Latin-1: a file's bytes are searched as they are, one character each.
        text = response.data.decode("latin-1") + repr(list(response.headers.items()))
        leaked = [canary for canary in canaries if canary.lower() in text.lower()]
        assert leaked == [], (method, path, leaked)
        if endpoint == "clinician.messages" and response.status_code == 200:
            names = [a["filename"] for m in response.get_json()["items"] for a in m["attachments"]]
            assert all(re.fullmatch(r"(photo|document)-\d+\.\w+", n) for n in names), names

    one = {"path_args": {"conversation_id": uuid.UUID(conversation_id)}}
    for status in ("open", "answered", "closed"):
        call("GET", "clinician.queue", f"?status={status}")
    call("GET", "clinician.conversation", **one)
    call("GET", "clinician.messages", **one)
    call("GET", "clinician.messages", "?order=asc&limit=1", **one)
    for attachment_id in attachment_ids:  # the bytes and the name of each file
        call(
            "GET",
            "attachments.download_clinician_attachment",
            path_args={"attachment_id": uuid.UUID(attachment_id)},
        )
    call(
        "POST",
        "attachments.upload_clinician_attachment",
        files={"file": (io.BytesIO(files.pdf()), "leaflet.pdf")},
        **one,
    )
    call("POST", "clinician.claim", **one)
    call("PUT", "clinician.save_draft", body="A draft", **one)
    call("GET", "clinician.draft", **one)
    call("DELETE", "clinician.discard_draft", **one)
    call("POST", "clinician.create_template", title="Knee", body="Rest it.")
    call("GET", "clinician.templates")
    some_template = {"path_args": {"template_id": uuid.uuid4()}}  # 404s: no text to leak
    call("GET", "clinician.template", **some_template)
    call("PUT", "clinician.update_template", title="Knee", body="Ice it.", **some_template)
    call("DELETE", "clinician.delete_template", **some_template)
    call("POST", "clinician.reply", body="An answer", **one)
    call("GET", "clinician.queue", "?status=answered")
    call("GET", "clinician.queue", "?claim=mine")
    call("POST", "clinician.mark_read", **one)
    colleague = make_staff(runtime, Role.CLINICIAN)
    call("POST", "clinician.hand_over", to=str(colleague.id), reason="shift_end", **one)
    call("POST", "clinician.claim", path_args={"conversation_id": uuid.UUID(other_id)})
    call("DELETE", "clinician.release_claim", path_args={"conversation_id": uuid.UUID(other_id)})
    call("POST", "clinician.close", **one)
    call("POST", "clinician.close", **one)  # 409
    call("POST", "clinician.reply", body="Late", **one)  # 409
    call("GET", "clinician.conversation", path_args={"conversation_id": uuid.uuid4()})  # 404
    call("GET", "clinician.conversation", path_args={"conversation_id": uuid.UUID(other_id)})
    assert called == _clinician_facing_routes(app)


def test_admins_and_compliance_officers_get_403_on_every_content_route(
    app, client, runtime, team, patient
):
    conversation_id = asked(client, patient, "Secret question", subject="Secret subject")
    admin = login(client, runtime, make_staff(runtime, Role.ADMIN))
    compliance = login(client, runtime, team.compliance)
    routes = _routes(app, "clinician", "conversations")
    # With the member's DELETE (deletion request), the claim and read routes, the draft (3) and
    # the canned replies (5).
    assert len(routes) == 24
    for tokens in (admin, compliance):
        for method, rule in sorted(routes):
            path = rule.replace("<uuid:conversation_id>", conversation_id).replace(
                "<uuid:template_id>", str(uuid.uuid4())
            )
            response = client.open(path, method=method, json=_body(rule), headers=bearer(tokens))
            assert response.status_code == 403, (method, path)
            assert response.get_json()["error"]["code"] == "forbidden"
            assert b"Secret" not in response.data
    assert count(runtime, Message) == 1


def test_a_clinician_without_the_role_key_is_told_so_until_granted_and_signed_in_again(
    app, client, runtime, team, patient, doctor
):
    conversation_id = asked(client, patient, "Question")
    newcomer = make_staff(runtime, Role.CLINICIAN)
    before_grant = login(client, runtime, newcomer)
    for method, rule in sorted(_clinician_routes(app)):
        path = rule.replace("<uuid:conversation_id>", conversation_id).replace(
            "<uuid:template_id>", str(uuid.uuid4())
        )
        response = client.open(path, method=method, json=_body(rule), headers=bearer(before_grant))
        assert response.status_code == 403, (method, path)
        assert response.get_json()["error"]["code"] == "role_key_required"

    granted = client.post(
        f"/api/v1/clinician/colleagues/{newcomer.id}/grant", headers=bearer(doctor)
    )
    assert granted.status_code == 200
    still = client.get(QUEUE, headers=bearer(before_grant))
    assert still.get_json()["error"]["code"] == "role_key_required"
    after_login = login(client, runtime, newcomer)
    assert _ids(_queue(client, after_login)) == [conversation_id]


def test_clinician_reads_and_writes_are_audited_with_the_member_as_subject(
    client, runtime, member, patient, doctor
):
    conversation_id = asked(client, patient, "Audited question", subject="Audited subject")
    other_id = asked(client, patient, "Second")
    _queue(client, doctor)
    client.get(f"{CASES}/{conversation_id}", headers=bearer(doctor))
    client.get(f"{CASES}/{conversation_id}/messages", headers=bearer(doctor))
    claim(client, doctor, conversation_id)
    send(client, doctor, f"{CASES}/{conversation_id}/messages", "Audited answer")
    client.post(f"{CASES}/{conversation_id}/close", headers=bearer(doctor))
    # The member's own reads are not "access by someone else".
    client.get(f"{CONVERSATIONS}/{conversation_id}/messages", headers=bearer(patient))

    with runtime.database.transaction() as session:
        entries = [
            e
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.seq))
            if e.actor_role == "clinician"
            and e.action.startswith(("content.", "message.", "conversation."))
        ]
    actions = [(e.action, e.target_id) for e in entries]
    assert sorted(actions[:2]) == sorted(
        [("content.read.queue", conversation_id), ("content.read.queue", other_id)]
    )
    assert actions[2:4] == [
        ("content.read.conversation", conversation_id),
        ("content.read.messages", conversation_id),
    ]
    assert actions[4] == ("conversation.claim", conversation_id)
    assert actions[5][0] == "message.send" and actions[6] == ("conversation.close", conversation_id)
    assert {e.subject_id for e in entries} == {member.id}
    for entry in entries:
        assert "Audited" not in entry.details
    with runtime.database.transaction() as session:
        member_reads = session.scalars(
            select(AuditEntry).where(
                AuditEntry.actor_role == "member", AuditEntry.action.like("content.read%")
            )
        ).all()
    assert member_reads == []
