"""The sealed archive for compliance officers: finding records, and opening them through four
eyes (API.md "Compliance"; SECURITY-MODEL "Who uses it", "Deletion, sealed archive, retention").

Officers find sealed records by the member's address (in a POST body, so personal data stays out
of URLs and logs) and see metadata only. Content opens through four eyes: officer A asks with a
justification, officer B (never A, and only one who holds the archive key) approves, then A
alone opens it, with the archive key of A's two-factor session, until the approval expires. An
officer who could not open the record cannot vouch for opening it, and content altered in the
database is refused, never shown. So no officer reads a sealed conversation alone, and none
reads one that is not what was sealed.

What leaves the archive and what stays on record of it (the signed export, the ledger's
verification, the audit trail) is proved in ``tests/api/test_compliance_evidence.py``.
"""

from __future__ import annotations

import json
import uuid

import pytest

from access_control.roles import Role
from medchat.models import RetrievalRequest
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.archive import flip_byte
from tests.support.audit import audit_entries
from tests.support.compliance import (
    ARCHIVE,
    ATTACHMENT,
    BODY,
    JUSTIFICATION,
    REPLY,
    RETRIEVALS,
    SUBJECT,
    Archive,
    approve,
    ask,
    content,
    sealed_archive,
    search,
)
from tests.support.messaging import CONVERSATIONS, asked, care_team, give_consent
from tests.support.responses import error_code
from tests.support.sample_files import as_stored


@pytest.fixture
def archive(client, runtime) -> Archive:
    return sealed_archive(client, runtime)


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
