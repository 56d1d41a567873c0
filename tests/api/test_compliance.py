"""The sealed archive for compliance officers (API.md "Compliance"; SECURITY-MODEL "Who uses
it", "Deletion, sealed archive, retention", "Audit").

Officers find sealed records by the member's address (in a POST body) and see metadata only.
Content opens through four eyes: officer A asks with a justification, officer B (never A, and
only one who holds the archive key) approves, then A alone opens it, with the archive key of
A's two-factor session, until the approval expires. An export is a signed bundle that verifies
offline with the published key and fails after one edited byte. Every step is audited with the
member as subject.
"""

from __future__ import annotations

import copy
import io
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from access_control.roles import Role
from medchat import audit
from medchat.archive.bundle import BundleRejected, bundle_bytes, verify_bundle
from medchat.models import RetrievalRequest
from tests.support.accounts import Person, bearer, login, make_member, make_staff
from tests.support.archive import flip_byte
from tests.support.audit import audit_entries
from tests.support.messaging import CONVERSATIONS, asked, care_team, claim, give_consent
from tests.support.responses import error_code
from tests.support.sample_files import as_stored, pdf

ARCHIVE = "/api/v1/compliance/archive"
RETRIEVALS = "/api/v1/compliance/retrievals"
SUBJECT = "Archive canary subject K4"
BODY = "Archive canary body K4: my blood test results"
REPLY = "Archive canary reply K4: the values are normal"
JUSTIFICATION = "Court order 2026-117 requires the exchange of March (case of J. Doe)."
ATTACHMENT = pdf("K4 results")


@dataclass
class Archive:
    member: Person
    conversation_id: str
    message_ids: list[str]
    attachment_id: str
    record_id: str
    a: dict[str, str]
    b: dict[str, str]
    c: dict[str, str]
    officers: dict[str, Person]


@pytest.fixture
def archive(client, runtime) -> Archive:
    """A sealed conversation (question, reply, attachment) and three compliance officers:
    A holds the archive key (``keys init``) and granted it to B; C does not hold it."""
    team = care_team(runtime)
    member = make_member(runtime, email="k4.member@example.org")
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    conversation_id = asked(client, tokens, BODY, subject=SUBJECT)
    doctor = bearer(login(client, runtime, team.clinician))
    claim(client, doctor, conversation_id)
    reply = client.post(
        f"/api/v1/clinician/conversations/{conversation_id}/messages",
        json={"body": REPLY},
        headers=doctor,
    )
    assert reply.status_code == 201
    upload = client.post(
        f"{CONVERSATIONS}/{conversation_id}/attachments",
        headers=bearer(tokens),
        data={"file": (io.BytesIO(ATTACHMENT), "results.pdf", "application/pdf")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 201
    messages = client.get(
        f"{CONVERSATIONS}/{conversation_id}/messages?order=asc", headers=bearer(tokens)
    ).get_json()["items"]
    assert (
        client.delete(f"{CONVERSATIONS}/{conversation_id}", headers=bearer(tokens)).status_code
        == 202
    )
    officers = {
        "a": team.compliance,
        "b": make_staff(runtime, Role.COMPLIANCE),
        "c": make_staff(runtime, Role.COMPLIANCE),
    }
    a = bearer(login(client, runtime, officers["a"]))
    grant = client.post(f"/api/v1/compliance/colleagues/{officers['b'].id}/grant", headers=a)
    assert grant.status_code == 200
    auth = {name: bearer(login(client, runtime, person)) for name, person in officers.items()}
    found = search(client, auth["a"], member.email)
    return Archive(
        member,
        conversation_id,
        [m["id"] for m in messages],
        upload.get_json()["id"],
        found["items"][0]["id"],
        auth["a"],
        auth["b"],
        auth["c"],
        officers,
    )


def search(client, auth: dict[str, str], email: str, query: str = "") -> dict[str, Any]:
    response = client.post(f"{ARCHIVE}/search{query}", json={"member_email": email}, headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def ask(client, archive: Archive, auth: dict[str, str] | None = None) -> str:
    response = client.post(
        f"{ARCHIVE}/{archive.record_id}/retrievals",
        json={"justification": JUSTIFICATION},
        headers=auth or archive.a,
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["status"] == "pending"
    return response.get_json()["id"]  # type: ignore[no-any-return]


def approve(client, retrieval_id: str, auth: dict[str, str]) -> Any:
    return client.post(f"{RETRIEVALS}/{retrieval_id}/approve", headers=auth)


def content(client, retrieval_id: str, auth: dict[str, str]) -> Any:
    return client.get(f"{RETRIEVALS}/{retrieval_id}/content", headers=auth)


# -- finding records ----------------------------------------------------------------------------


def test_search_by_email_finds_the_record_with_metadata_only(client, archive):
    page = search(client, archive.b, archive.member.email.upper())
    (item,) = page["items"]
    assert page["next_cursor"] is None
    assert set(item) == {
        "id",
        "seq",
        "conversation_id",
        "question_at",
        "sealed_at",
        "reason",
        "message_count",
        "content_destroyed",
    }
    assert item["conversation_id"] == archive.conversation_id
    assert (item["reason"], item["message_count"], item["content_destroyed"]) == (
        "member_request",
        3,
        False,
    )
    assert item["sealed_at"].endswith("Z")


def test_search_results_hold_no_content_and_no_personal_data(client, archive):
    response = client.post(
        f"{ARCHIVE}/search", json={"member_email": archive.member.email}, headers=archive.a
    )
    text = response.get_data(as_text=True)
    for secret in (SUBJECT, BODY, REPLY, "results.pdf", archive.member.email, "Durand"):
        assert secret not in text


def test_an_unknown_address_finds_nothing(client, archive):
    assert search(client, archive.a, "nobody@example.org") == {"items": [], "next_cursor": None}


def test_search_pages_newest_first(client, runtime, archive):
    tokens = login(client, runtime, archive.member)
    for n in range(2):
        conversation_id = asked(client, tokens, f"Question {n}")
        client.delete(f"{CONVERSATIONS}/{conversation_id}", headers=bearer(tokens))
    first = search(client, archive.a, archive.member.email, "?limit=2")
    assert [item["seq"] for item in first["items"]] == [3, 2]
    rest = search(
        client, archive.a, archive.member.email, f"?limit=2&cursor={first['next_cursor']}"
    )
    assert [item["seq"] for item in rest["items"]] == [1]
    assert rest["next_cursor"] is None


def test_search_needs_an_address_in_the_body(client, archive):
    response = client.post(
        f"{ARCHIVE}/search", json={"member_email": "not-an-address"}, headers=archive.a
    )
    assert response.status_code == 422
    response = client.post(f"{ARCHIVE}/search", json={}, headers=archive.a)
    assert response.status_code == 422


def test_the_published_key_is_public_and_the_pinned_one(client, runtime):
    response = client.get("/api/v1/archive/public-key")
    assert response.status_code == 200
    body = response.get_json()
    assert body["algorithm"] == "Ed25519"
    assert body["public_key"] == runtime.archive_signer.public_key.hex()
    assert body["fingerprint"] == runtime.archive_signer.fingerprint


# -- four eyes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "justification",
    ["too short", " " * 30 + "short" + " " * 30, "x" * 2001],
    ids=["short", "blank-padded", "long"],
)
def test_a_justification_has_20_to_2000_characters(client, archive, justification):
    response = client.post(
        f"{ARCHIVE}/{archive.record_id}/retrievals",
        json={"justification": justification},
        headers=archive.a,
    )
    assert response.status_code == 422
    assert "justification" in response.get_json()["error"]["details"]


def test_an_unknown_record_cannot_be_requested(client, archive):
    response = client.post(
        f"{ARCHIVE}/{uuid.uuid4()}/retrievals",
        json={"justification": JUSTIFICATION},
        headers=archive.a,
    )
    assert response.status_code == 404


def test_the_justification_is_stored_sealed_and_shown_to_the_approver(client, runtime, archive):
    retrieval_id = ask(client, archive)
    with runtime.database.transaction() as session:
        stored = session.get(RetrievalRequest, uuid.UUID(retrieval_id)).justification_ciphertext
    assert b"Court order" not in stored and b"Doe" not in stored
    pending = client.get(RETRIEVALS, headers=archive.b).get_json()["items"]
    assert [(r["id"], r["justification"], r["status"]) for r in pending] == [
        (retrieval_id, JUSTIFICATION, "pending")
    ]
    one = client.get(f"{RETRIEVALS}/{retrieval_id}", headers=archive.b).get_json()
    assert one["record_id"] == archive.record_id and one["justification"] == JUSTIFICATION


def test_retrieval_is_refused_before_approval(client, archive):
    retrieval_id = ask(client, archive)
    response = content(client, retrieval_id, archive.a)
    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    export = client.get(f"{RETRIEVALS}/{retrieval_id}/export", headers=archive.a)
    assert export.status_code == 403


def test_the_requester_cannot_approve_their_own_request(client, archive):
    retrieval_id = ask(client, archive)
    response = approve(client, retrieval_id, archive.a)
    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert content(client, retrieval_id, archive.a).status_code == 403


def test_approval_is_once(client, archive):
    retrieval_id = ask(client, archive)
    assert approve(client, retrieval_id, archive.b).get_json() == {"status": "approved"}
    again = approve(client, retrieval_id, archive.b)
    assert again.status_code == 409


def test_after_approval_only_the_requester_opens_the_decrypted_conversation(client, archive):
    retrieval_id = ask(client, archive)
    assert approve(client, retrieval_id, archive.b).status_code == 200

    for other in (archive.b, archive.c):
        refused = content(client, retrieval_id, other)
        assert refused.status_code == 403 and error_code(refused) == "forbidden"

    response = content(client, retrieval_id, archive.a)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    opened = response.get_json()
    assert opened["subject"] == SUBJECT
    assert opened["record_id"] == archive.record_id
    assert [m["body"] for m in opened["messages"]] == [BODY, REPLY, ""]
    assert [m["author"] for m in opened["messages"]] == ["member", "clinician", "member"]
    (attached,) = opened["messages"][2]["attachments"]
    # An officer is staff: the file is named by kind and order, never as the member named it.
    assert (attached["filename"], attached["content_type"], attached["size"]) == (
        "document-1.pdf",
        "application/pdf",
        len(as_stored(ATTACHMENT)),
    )
    download = client.get(
        f"{RETRIEVALS}/{retrieval_id}/attachments/{archive.attachment_id}", headers=archive.a
    )
    assert download.status_code == 200 and download.data == as_stored(ATTACHMENT)
    assert 'filename="document-1.pdf"' in download.headers["Content-Disposition"]
    assert (
        client.get(
            f"{RETRIEVALS}/{retrieval_id}/attachments/{archive.attachment_id}", headers=archive.c
        ).status_code
        == 403
    )


def test_retrieval_is_refused_after_expiry(client, runtime, archive):
    retrieval_id = ask(client, archive)
    approve(client, retrieval_id, archive.b)
    runtime.clock.advance(hours=23, minutes=50)
    a = bearer(login(client, runtime, archive.officers["a"]))
    assert content(client, retrieval_id, a).status_code == 200

    runtime.clock.advance(minutes=10)
    a = bearer(login(client, runtime, archive.officers["a"]))
    response = content(client, retrieval_id, a)
    assert response.status_code == 403
    assert "expired" in response.get_json()["error"]["message"]
    listed = client.get(f"{RETRIEVALS}?status=approved", headers=a).get_json()["items"]
    assert [r["status"] for r in listed] == ["expired"]


def test_the_retrieval_window_is_configurable(make_app):
    app = make_app(retrieval_hours=2)
    client, runtime = app.test_client(), app.extensions["medchat"]
    team = care_team(runtime)
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    conversation_id = asked(client, tokens, BODY)
    client.delete(f"{CONVERSATIONS}/{conversation_id}", headers=bearer(tokens))
    b = make_staff(runtime, Role.COMPLIANCE)
    a_auth = bearer(login(client, runtime, team.compliance))
    client.post(f"/api/v1/compliance/colleagues/{b.id}/grant", headers=a_auth)
    record_id = search(client, a_auth, member.email)["items"][0]["id"]
    retrieval = client.post(
        f"{ARCHIVE}/{record_id}/retrievals", json={"justification": JUSTIFICATION}, headers=a_auth
    ).get_json()["id"]
    approve(client, retrieval, bearer(login(client, runtime, b)))
    runtime.clock.advance(hours=2)
    a_auth = bearer(login(client, runtime, team.compliance))
    assert content(client, retrieval, a_auth).status_code == 403


def test_an_officer_without_the_archive_key_opens_nothing_until_granted(client, runtime, archive):
    """C asks and A approves; C's session has no archive key (403 role_key_required) until A
    grants it and C signs in again."""
    retrieval_id = ask(client, archive, archive.c)
    assert approve(client, retrieval_id, archive.a).status_code == 200
    refused = content(client, retrieval_id, archive.c)
    assert refused.status_code == 403 and error_code(refused) == "role_key_required"

    officer_c = archive.officers["c"]
    grant = client.post(f"/api/v1/compliance/colleagues/{officer_c.id}/grant", headers=archive.a)
    assert grant.status_code == 200
    c = bearer(login(client, runtime, officer_c))
    response = content(client, retrieval_id, c)
    assert response.status_code == 200
    assert response.get_json()["subject"] == SUBJECT


def refused_steps(runtime) -> list[tuple[str, str, uuid.UUID]]:
    """(action, why, actor) of every refused retrieval step, in order."""
    return [
        (e.action, json.loads(e.details)["refused"], e.actor_id)
        for e in audit_entries(runtime, prefix="archive.retrieval")
        if e.outcome == "denied"
    ]


def test_an_officer_never_granted_the_archive_key_cannot_approve(client, runtime, archive):
    """Issue 11, finding 7: C, created by an admin and never granted the archive key, is not
    a second pair of eyes: the approval is refused (403, audited) and A cannot open."""
    retrieval_id = ask(client, archive)

    refused = approve(client, retrieval_id, archive.c)

    assert refused.status_code == 403 and error_code(refused) == "role_key_required"
    assert refused_steps(runtime) == [
        ("archive.retrieval.approve", "role_key_required", archive.officers["c"].id)
    ]
    pending = client.get(f"{RETRIEVALS}/{retrieval_id}", headers=archive.a).get_json()
    assert (pending["status"], pending["approved_by"]) == ("pending", None)
    opened = content(client, retrieval_id, archive.a)
    assert opened.status_code == 403
    assert "not been approved" in opened.get_json()["error"]["message"]
    # B, who holds the key, can still approve it.
    assert approve(client, retrieval_id, archive.b).status_code == 200
    assert content(client, retrieval_id, archive.a).status_code == 200


def test_a_requester_without_the_archive_key_is_refused_and_audited(client, runtime, archive):
    retrieval_id = ask(client, archive, archive.c)
    assert approve(client, retrieval_id, archive.b).status_code == 200

    refused = content(client, retrieval_id, archive.c)

    assert refused.status_code == 403 and error_code(refused) == "role_key_required"
    assert refused_steps(runtime) == [
        ("archive.retrieval.open", "role_key_required", archive.officers["c"].id)
    ]


def test_altered_archived_content_is_refused_at_opening(client, runtime, archive):
    retrieval_id = ask(client, archive)
    approve(client, retrieval_id, archive.b)
    flip_byte(runtime, "messages", "body_ciphertext", uuid.UUID(archive.message_ids[0]))

    response = content(client, retrieval_id, archive.a)
    assert response.status_code == 409
    assert error_code(response) == "archive_integrity_failed"


# -- export --------------------------------------------------------------------------------------


def exported_bytes(client, archive: Archive) -> bytes:
    """The export as served: the bundle's canonical bytes."""
    retrieval_id = ask(client, archive)
    approve(client, retrieval_id, archive.b)
    response = client.get(f"{RETRIEVALS}/{retrieval_id}/export", headers=archive.a)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Content-Disposition"].startswith("attachment")
    return response.get_data()  # type: ignore[no-any-return]


def exported(client, archive: Archive) -> dict[str, Any]:
    return json.loads(exported_bytes(client, archive))  # type: ignore[no-any-return]


def published_key(client) -> bytes:
    return bytes.fromhex(client.get("/api/v1/archive/public-key").get_json()["public_key"])


def test_an_export_verifies_offline_with_the_published_key(client, archive):
    served = exported_bytes(client, archive)
    assert served == bundle_bytes(json.loads(served))  # canonical, as served
    summary = verify_bundle(served, published_key(client))
    bundle = json.loads(served)
    assert summary.record_id == archive.record_id
    assert summary.conversation_id == archive.conversation_id
    assert summary.messages == 3
    messages = bundle["conversation"]["messages"]
    assert [m["body"] for m in messages] == [BODY, REPLY, ""]
    attachment = messages[2]["attachments"][0]
    import hashlib

    assert attachment["sha256"] == hashlib.sha256(as_stored(ATTACHMENT)).hexdigest()
    assert attachment["filename"] == "document-1.pdf"


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b["conversation"]["messages"][0].update(body=BODY.replace("blood", "bloom")),
        lambda b: b["conversation"].update(subject=SUBJECT + "!"),
        lambda b: b["record"].update(reason="retention"),
        lambda b: b["record"].update(message_count=2),
        lambda b: b.update(exported_at="2020-01-01T00:00:00Z"),
        lambda b: b.update(
            signature=b["signature"][:-2] + ("00" if b["signature"][-2:] != "00" else "01")
        ),
    ],
    ids=["body", "subject", "record-reason", "record-count", "time", "signature"],
)
def test_an_export_with_one_edit_fails(client, archive, edit):
    bundle = exported(client, archive)
    edited = copy.deepcopy(bundle)
    edit(edited)
    with pytest.raises(BundleRejected):
        verify_bundle(bundle_bytes(edited), published_key(client))


def test_an_export_re_signed_with_another_key_fails_against_the_published_key(client, archive):
    from medchat.archive.bundle import sign_bundle
    from medchat.archive.signing import load_archive_signer

    bundle = exported(client, archive)
    attacker = load_archive_signer(b"\x07" * 32, "", production=False)
    forged = sign_bundle(attacker, {k: v for k, v in bundle.items() if k != "signature"})
    # Even under the attacker's own key it fails: the ledger record inside is the real key's.
    with pytest.raises(BundleRejected, match="ledger record's signature"):
        verify_bundle(bundle_bytes(forged), attacker.public_key)
    with pytest.raises(BundleRejected, match="names signing key"):
        verify_bundle(bundle_bytes(forged), published_key(client))


# -- verification and audit ----------------------------------------------------------------------


def test_verify_endpoint_names_the_first_bad_record(client, runtime, archive):
    response = client.get(f"{ARCHIVE}/verify", headers=archive.c)
    assert response.status_code == 200
    body = response.get_json()
    assert (body["ok"], body["records"], body["first_bad"]) == (True, 1, None)
    assert body["head_seq"] == 1

    flip_byte(runtime, "attachments", "data_ciphertext", uuid.UUID(archive.attachment_id))
    body = client.get(f"{ARCHIVE}/verify", headers=archive.c).get_json()
    assert (body["ok"], body["first_bad"]) == (False, archive.record_id)
    assert "content" in body["reason"]


def test_every_step_is_audited_with_the_member_as_subject(client, runtime, archive):
    retrieval_id = ask(client, archive)
    approve(client, retrieval_id, archive.a)  # refused: self-approval
    content(client, retrieval_id, archive.a)  # refused: not approved
    approve(client, retrieval_id, archive.b)
    content(client, retrieval_id, archive.c)  # refused: not the requester
    content(client, retrieval_id, archive.a)
    client.get(
        f"{RETRIEVALS}/{retrieval_id}/attachments/{archive.attachment_id}", headers=archive.a
    )
    client.get(f"{RETRIEVALS}/{retrieval_id}/export", headers=archive.a)

    trail = audit_entries(runtime, prefix="archive.")
    steps = [(e.action, e.outcome, json.loads(e.details).get("refused")) for e in trail]
    assert steps == [
        ("archive.search", "success", None),
        ("archive.retrieval.request", "success", None),
        ("archive.retrieval.approve", "denied", "self_approval"),
        ("archive.retrieval.open", "denied", "not_approved"),
        ("archive.retrieval.approve", "success", None),
        ("archive.retrieval.open", "denied", "not_the_requester"),
        ("archive.retrieval.open", "success", None),
        ("archive.retrieval.attachment", "success", None),
        ("archive.retrieval.export", "success", None),
    ]
    officers = {name: person.id for name, person in archive.officers.items()}
    assert [e.actor_id for e in trail] == [
        officers[n] for n in ("a", "a", "a", "a", "b", "c", "a", "a", "a")
    ]
    for entry in trail:
        assert entry.subject_id == archive.member.id
        for secret in (SUBJECT, BODY, REPLY, JUSTIFICATION, archive.member.email):
            assert secret not in (entry.details or "")
        if entry.action.startswith("archive.retrieval"):
            assert entry.target_id == retrieval_id
    with runtime.database.transaction() as session:
        assert audit.verify(session, runtime.keys.audit_mac).ok
    assert client.get(f"{ARCHIVE}/verify", headers=archive.a).get_json()["ok"]
