"""Clinicians' draft answers (issue 17, item 5): saved sealed, shown to their author only,
gone when the answer is sent, when the conversation is deleted, and unreadable when moved."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from access_control.roles import Role
from medchat.models import ConversationDraft
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.audit import audit_entries
from tests.support.messaging import asked, care_team, claim, give_consent
from tests.support.retention import every_stored_value
from tests.support.rotation import grant

CASES = "/api/v1/clinician/conversations"
DRAFT_TEXT = "Draft canary D5: consider an ankle X-ray before"


@pytest.fixture
def case(client, runtime):
    team = care_team(runtime)
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    conversation_id = asked(client, tokens, "My ankle is swollen.", subject="Ankle")
    doctor = login(client, runtime, team.clinician)
    return {
        "team": team,
        "member": tokens,
        "doctor": doctor,
        "id": conversation_id,
        "path": f"{CASES}/{conversation_id}/draft",
    }


def drafts(runtime) -> list[ConversationDraft]:
    with runtime.database.transaction() as session:
        rows = list(session.scalars(select(ConversationDraft)))
        session.expunge_all()
    return rows


def test_a_draft_is_saved_sealed_and_read_back_by_its_author_audited(client, runtime, case):
    saved = client.put(case["path"], json={"body": DRAFT_TEXT}, headers=bearer(case["doctor"]))
    assert saved.status_code == 200, saved.get_json()
    assert saved.get_json()["body"] == DRAFT_TEXT
    read = client.get(case["path"], headers=bearer(case["doctor"]))
    assert read.status_code == 200
    assert read.get_json()["body"] == DRAFT_TEXT
    assert read.get_json()["updated_at"].endswith("Z")
    assert DRAFT_TEXT.encode() not in every_stored_value(runtime)
    assert [e.subject_id for e in audit_entries(runtime, "draft.save")] != []
    assert len(audit_entries(runtime, "content.read.draft")) == 1
    again = client.put(case["path"], json={"body": "Shorter."}, headers=bearer(case["doctor"]))
    assert again.status_code == 200 and len(drafts(runtime)) == 1
    assert client.get(case["path"], headers=bearer(case["doctor"])).get_json()["body"] == "Shorter."


def test_no_draft_is_404_and_bad_bodies_are_422_changing_nothing(client, runtime, case):
    assert client.get(case["path"], headers=bearer(case["doctor"])).status_code == 404
    assert client.delete(case["path"], headers=bearer(case["doctor"])).status_code == 404
    for body in ({"body": ""}, {"body": "   "}, {"body": "x" * 10_001}, {}, {"body": 3}):
        answer = client.put(case["path"], json=body, headers=bearer(case["doctor"]))
        assert answer.status_code == 422, body
    assert drafts(runtime) == []


def test_a_colleague_never_sees_anothers_draft(client, runtime, case):
    colleague = make_staff(runtime, Role.CLINICIAN)
    grant(runtime, case["team"].clinician, colleague)
    theirs = login(client, runtime, colleague)
    client.put(case["path"], json={"body": DRAFT_TEXT}, headers=bearer(case["doctor"]))
    assert client.get(case["path"], headers=bearer(theirs)).status_code == 404
    assert client.delete(case["path"], headers=bearer(theirs)).status_code == 404
    assert client.get(case["path"], headers=bearer(case["doctor"])).status_code == 200


def test_sending_the_answer_ends_the_draft(client, runtime, case):
    client.put(case["path"], json={"body": DRAFT_TEXT}, headers=bearer(case["doctor"]))
    claim(client, case["doctor"], case["id"])  # answering needs the claim
    sent = client.post(
        f"{CASES}/{case['id']}/messages", json={"body": DRAFT_TEXT}, headers=bearer(case["doctor"])
    )
    assert sent.status_code == 201
    assert drafts(runtime) == []
    assert client.get(case["path"], headers=bearer(case["doctor"])).status_code == 404


def test_discard_and_closed_conversation(client, runtime, case):
    client.put(case["path"], json={"body": DRAFT_TEXT}, headers=bearer(case["doctor"]))
    assert client.delete(case["path"], headers=bearer(case["doctor"])).status_code == 204
    assert drafts(runtime) == [] and len(audit_entries(runtime, "draft.discard")) == 1
    closed = client.post(f"{CASES}/{case['id']}/close", headers=bearer(case["doctor"]))
    assert closed.status_code == 200
    refused = client.put(case["path"], json={"body": "Late"}, headers=bearer(case["doctor"]))
    assert refused.status_code == 409 and drafts(runtime) == []


def test_members_and_admins_have_no_drafts(client, runtime, case):
    admin = login(client, runtime, make_staff(runtime, Role.ADMIN))
    for tokens in (case["member"], admin):
        answer = client.put(case["path"], json={"body": "x"}, headers=bearer(tokens))
        assert answer.status_code == 403
    assert drafts(runtime) == []


def test_a_draft_moved_to_another_author_opens_nothing(client, runtime, case):
    """A database writer re-attributes a draft: the associated data names its author."""
    colleague = make_staff(runtime, Role.CLINICIAN)
    grant(runtime, case["team"].clinician, colleague)
    theirs = login(client, runtime, colleague)
    client.put(case["path"], json={"body": DRAFT_TEXT}, headers=bearer(case["doctor"]))
    with runtime.database.transaction() as session:
        session.execute(update(ConversationDraft).values(author_id=colleague.id))
    answer = client.get(case["path"], headers=bearer(theirs))
    assert answer.status_code == 409
    assert DRAFT_TEXT not in answer.get_data(as_text=True)


def test_deletion_forgets_the_drafts(client, runtime, case):
    client.put(case["path"], json={"body": DRAFT_TEXT}, headers=bearer(case["doctor"]))
    deleted = client.delete(f"/api/v1/conversations/{case['id']}", headers=bearer(case["member"]))
    assert deleted.status_code in (200, 202, 204), deleted.get_json()
    assert drafts(runtime) == []
