"""Console pages over the clinician services: queue, conversation, reply, attach, close."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from medchat.models import AuditEntry
from tests.support.accounts import bearer, login, make_member
from tests.support.console import console_login, csrf_from
from tests.support.messaging import asked, care_team, give_consent
from tests.support.sample_files import pdf

CANARIES = {
    "last_name": "Zzcanarylastname",
    "email": "zz.canary.mail@example.org",
    "phone": "+33 6 00 11 22 99",
    "insurance_number": "INS-ZZCANARY-42",
}


@pytest.fixture
def clinic(app, client, runtime):
    team = care_team(runtime)
    member = make_member(runtime, first_name="Camille", **CANARIES)
    api = app.test_client()
    tokens = login(api, runtime, member)
    give_consent(api, tokens)
    conversation_id = asked(api, tokens, "My knee hurts when I climb stairs.", subject="Knee pain")
    console_login(client, runtime, team.clinician)
    return {"api": api, "tokens": tokens, "conversation_id": conversation_id, "member": member}


def _page(client, path):
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_data(as_text=True)


def test_queue_lists_the_question_with_the_minimal_patient_view_and_an_unread_marker(
    client, clinic
):
    html = _page(client, "/console/queue")
    assert "Knee pain" in html and "Camille" in html
    assert 'class="unread"' in html
    _page(client, f"/console/conversations/{clinic['conversation_id']}")
    assert 'class="unread"' not in _page(client, "/console/queue")


def test_reply_attach_and_close_reach_the_member(client, clinic):
    path = f"/console/conversations/{clinic['conversation_id']}"
    html = _page(client, path)
    assert "My knee hurts" in html
    token = csrf_from(html)
    assert "Nobody has this question yet" in html
    claimed = client.post(f"{path}/claim", data={"csrf_token": token})
    assert claimed.status_code == 302 and "notice=claimed" in claimed.headers["Location"]
    response = client.post(
        f"{path}/reply", data={"csrf_token": token, "body": "Rest and ice for two days."}
    )
    assert response.status_code == 302 and "notice=sent" in response.headers["Location"]
    response = client.post(
        f"{path}/attach",
        data={
            "csrf_token": token,
            "file": (__import__("io").BytesIO(pdf("advice")), "advice.pdf", "application/pdf"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    html = _page(client, path)
    download = re.search(r'href="(/console/attachments/[^"]+)"', html).group(1)
    file = client.get(download)
    assert file.status_code == 200 and file.data.startswith(b"%PDF")
    assert file.headers["Content-Disposition"].startswith("attachment")
    response = client.post(f"{path}/close", data={"csrf_token": token})
    assert response.status_code == 302
    assert "This conversation is closed" in _page(client, path)
    messages = (
        clinic["api"]
        .get(
            f"/api/v1/conversations/{clinic['conversation_id']}/messages?order=asc",
            headers=bearer(clinic["tokens"]),
        )
        .get_json()["items"]
    )
    assert [m["author"] for m in messages] == ["member", "clinician", "clinician"]
    assert messages[1]["body"] == "Rest and ice for two days."
    assert messages[2]["attachments"][0]["filename"] == "advice.pdf"
    status = clinic["api"].get(
        f"/api/v1/conversations/{clinic['conversation_id']}", headers=bearer(clinic["tokens"])
    )
    assert status.get_json()["status"] == "closed"


def test_actions_on_a_closed_conversation_are_refused(client, clinic):
    path = f"/console/conversations/{clinic['conversation_id']}"
    token = csrf_from(_page(client, path))
    client.post(f"{path}/close", data={"csrf_token": token})
    refused = client.post(f"{path}/reply", data={"csrf_token": token, "body": "late"})
    assert refused.status_code == 409


def test_no_page_shows_the_patients_last_name_email_phone_or_insurance_number(client, clinic):
    path = f"/console/conversations/{clinic['conversation_id']}"
    pages = [
        _page(client, "/console/queue"),
        _page(client, path),
        _page(client, "/console/account"),
        _page(client, "/console/queue?status=answered"),
    ]
    for html in pages:
        for name, canary in CANARIES.items():
            assert canary not in html, name
        assert str(clinic["member"].id) not in html


def test_console_reads_are_audited_like_api_reads(client, clinic, runtime):
    _page(client, f"/console/conversations/{clinic['conversation_id']}")
    with runtime.database.transaction() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action.like("content.read%"))
        ).all()
    assert {e.subject_id for e in entries} == {clinic["member"].id}
    assert any(e.target_id == clinic["conversation_id"] for e in entries)


def test_a_form_posted_without_csrf_changes_nothing(client, clinic):
    path = f"/console/conversations/{clinic['conversation_id']}"
    assert client.post(f"{path}/reply", data={"body": "no token"}).status_code == 403
    assert client.post(f"{path}/close", data={}).status_code == 403
    assert "no token" not in _page(client, path)
    assert "Send answer" in _page(client, path)  # still open


def test_unknown_conversation_is_a_404_page(client, clinic):
    response = client.get("/console/conversations/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


def test_save_draft_keeps_the_answer_for_its_author_until_it_is_sent(client, clinic):
    """Issue 17, item 5: the answer form's "Save draft" (no JavaScript: a second button)."""
    path = f"/console/conversations/{clinic['conversation_id']}"
    html = _page(client, path)
    assert "Save draft" in html
    response = client.post(
        f"{path}/draft", data={"csrf_token": csrf_from(html), "body": "Draft canary: rest it."}
    )
    assert response.status_code == 302 and "notice=draft_saved" in response.headers["Location"]
    html = _page(client, path + "?notice=draft_saved")
    assert "Draft canary: rest it." in html and "only you see it" in html
    client.post(f"{path}/claim", data={"csrf_token": csrf_from(html)})
    html = _page(client, path)
    assert "Draft canary: rest it." in html  # claiming keeps the draft
    sent = client.post(f"{path}/reply", data={"csrf_token": csrf_from(html), "body": "Rest it."})
    assert sent.status_code == 302 and "notice=sent" in sent.headers["Location"]
    assert "Draft canary" not in _page(client, path)


def test_canned_replies_are_added_and_used_in_an_answer(client, clinic):
    """Issue 17, item 5: the Replies page, and "Use" starting an answer from one."""
    html = _page(client, "/console/replies")
    response = client.post(
        "/console/replies",
        data={"csrf_token": csrf_from(html), "title": "Knee", "body": "Canned canary: ice it."},
    )
    assert response.status_code == 302
    assert "Canned canary: ice it." in _page(client, "/console/replies?notice=added")
    path = f"/console/conversations/{clinic['conversation_id']}"
    html = _page(client, path)
    match = re.search(r'href="([^"]*\?template=[0-9a-f-]{36})"', html)
    assert match, "no Use link"
    used = _page(client, match.group(1).replace("&amp;", "&"))
    assert "Canned canary: ice it.</textarea>" in used
    html = _page(client, "/console/replies")
    delete = re.search(r'action="(/console/replies/[0-9a-f-]{36}/delete)"', html).group(1)
    assert client.post(delete, data={"csrf_token": csrf_from(html)}).status_code == 302
    assert "Canned canary" not in _page(client, "/console/replies")
