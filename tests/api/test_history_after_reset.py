"""A member's history across a password reset, through the real HTTP endpoints (SECURITY-MODEL
key hierarchy 7).

After the reset the member's earlier conversations are listed but unreadable (``readable``
false, 409 ``history_pending``) until a clinician's request, API or console, drains the
re-wrap queue; then the member reads the whole history again. At every point the stored wraps
of the member's conversations open only with the physician key, the archive key or the
member's current personal key.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, text

from access_control.roles import Role
from medchat.keys.member_rewrap import RewrapQueue
from medchat.models import AuditEntry, RewrapRequest
from tests.support.accounts import Person, bearer, login
from tests.support.audit import audit_entries
from tests.support.console import console_login
from tests.support.mailbox import delivered, reset_token_in
from tests.support.messaging import asked, count
from tests.support.reset_history import (
    CONVERSATIONS,
    PICTURE,
    Before,
    a_member_after_reset,
    history,
    listing,
)
from tests.support.sample_files import as_stored
from tests.support.sessions import sign_in
from tests.support.wraps import assert_only_the_three_holders

QUEUE = "/api/v1/clinician/queue"


def holders_now(before: Before, *, member_can_read: bool):
    runtime = before.runtime
    return assert_only_the_three_holders(
        runtime,
        before.member.id,
        physician=sign_in(runtime, before.team.clinician).principal.keyring,
        archive=sign_in(runtime, before.team.compliance).principal.keyring,
        member=sign_in(runtime, before.member).principal.keyring if member_can_read else None,
    )


def test_history_is_unreadable_after_a_reset_until_a_clinician_request_then_whole(
    make_app, tmp_path
):
    before = a_member_after_reset(make_app(mail_url=f"file://{tmp_path}"), tmp_path)
    client, runtime = before.client, before.runtime
    auth = bearer(login(client, runtime, before.member))
    ids = list(before.histories)

    # Re-sealing waits for a clinician: the member's own requests drain nothing.
    listed = listing(client, auth)
    assert set(listed) == set(ids)
    for cid in ids:
        assert listed[cid]["readable"] is False and listed[cid]["subject"] is None
        assert listed[cid]["status"] == before.listed[cid]["status"]
        for path in (f"{CONVERSATIONS}/{cid}", f"{CONVERSATIONS}/{cid}/messages"):
            pending = client.get(path, headers=auth)
            assert pending.status_code == 409
            assert pending.get_json()["error"]["code"] == "history_pending"
        writing = client.post(f"{CONVERSATIONS}/{cid}/messages", json={"body": "?"}, headers=auth)
        assert writing.get_json()["error"]["code"] == "history_pending"
    download = client.get(f"/api/v1/attachments/{before.attachment_id}", headers=auth)
    assert download.status_code == 409
    assert holders_now(before, member_can_read=False) == {
        "physician": len(ids),
        "archive": len(ids),
    }
    # New questions work at once, sealed to the new key.
    fresh = asked(client, {"access_token": auth["Authorization"][7:]}, "A new question.")
    assert listing(client, auth)[fresh]["readable"] is True
    assert count(runtime, RewrapRequest) == len(ids)

    assert client.get(QUEUE, headers=before.clinician_auth).status_code == 200

    assert count(runtime, RewrapRequest) == 0
    after = listing(client, bearer(login(client, runtime, before.member)))
    for cid in ids:
        assert after[cid] == before.listed[cid]
        assert history(client, auth, cid) == before.histories[cid]
    picture = client.get(f"/api/v1/attachments/{before.attachment_id}", headers=auth)
    assert picture.status_code == 200 and picture.data == as_stored(PICTURE)
    assert holders_now(before, member_can_read=True) == {
        "physician": len(ids) + 1,
        "archive": len(ids) + 1,
        "member": len(ids) + 1,
    }
    with runtime.database.transaction() as session:
        entries = list(
            session.scalars(select(AuditEntry).where(AuditEntry.action == "conversation.rewrap"))
        )
    assert sorted(e.target_id for e in entries) == sorted(ids)
    assert {(e.subject_id, e.actor_id) for e in entries} == {
        (before.member.id, before.team.clinician.id)
    }


def test_each_clinician_request_drains_a_bounded_batch(make_app, tmp_path):
    before = a_member_after_reset(
        make_app(mail_url=f"file://{tmp_path}", rewrap_batch=2), tmp_path, conversations=5
    )
    client, runtime = before.client, before.runtime

    remaining = []
    for _ in range(3):
        assert client.get(QUEUE, headers=before.clinician_auth).status_code == 200
        remaining.append(count(runtime, RewrapRequest))

    assert remaining == [3, 1, 0]


def test_a_batch_of_zero_leaves_draining_to_the_worker(make_app, tmp_path):
    before = a_member_after_reset(make_app(mail_url=f"file://{tmp_path}", rewrap_batch=0), tmp_path)

    assert before.client.get(QUEUE, headers=before.clinician_auth).status_code == 200

    assert count(before.runtime, RewrapRequest) == 2


def test_a_console_page_drains_the_queue_too(make_app, tmp_path):
    before = a_member_after_reset(make_app(mail_url=f"file://{tmp_path}"), tmp_path)
    console = before.app.test_client()
    console_login(console, before.runtime, before.team.clinician)

    assert console.get("/console/queue?status=closed").status_code == 200

    assert count(before.runtime, RewrapRequest) == 0
    auth = bearer(login(before.client, before.runtime, before.member))
    for cid, messages in before.histories.items():
        assert history(before.client, auth, cid) == messages


def test_a_failing_drain_never_fails_the_clinicians_own_request(
    make_app, tmp_path, monkeypatch, caplog
):
    before = a_member_after_reset(make_app(mail_url=f"file://{tmp_path}"), tmp_path)
    client, runtime = before.client, before.runtime
    cid = next(iter(before.histories))
    calls = []

    def broken(self, actor, request):
        calls.append(request.id)
        # A statement that fails in the database: on PostgreSQL it would poison the
        # whole transaction if the drain were not inside its own savepoint.
        self.session.execute(text("SELECT no_such_column FROM rewrap_requests"))

    monkeypatch.setattr(RewrapQueue, "_rewrap", broken)

    with caplog.at_level(logging.ERROR, logger="medchat.rewrap"):
        reply = client.post(
            f"/api/v1/clinician/conversations/{cid}/messages",
            json={"body": "Still here."},
            headers=before.clinician_auth,
        )

    assert reply.status_code == 201, reply.get_json()
    assert calls and "re-wrap drain failed" in caplog.text
    assert count(runtime, RewrapRequest) == 2
    seen = client.get(
        f"/api/v1/clinician/conversations/{cid}/messages", headers=before.clinician_auth
    )
    assert "Still here." in [m["body"] for m in seen.get_json()["items"]]
    assert not audit_entries(runtime, "conversation.rewrap"), "a rolled-back re-seal was audited"
    monkeypatch.undo()
    assert client.get(QUEUE, headers=before.clinician_auth).status_code == 200
    assert count(runtime, RewrapRequest) == 0


def test_a_second_reset_before_the_drain_leaves_only_the_newest_key(make_app, tmp_path):
    before = a_member_after_reset(make_app(mail_url=f"file://{tmp_path}"), tmp_path)
    client, runtime = before.client, before.runtime
    again = client.post("/api/v1/auth/password-reset", json={"email": before.member.email})
    assert again.status_code == 202
    token = reset_token_in(delivered(runtime, tmp_path)[-1][0])
    newest = "saffron-glacier-otter-29"
    confirmed = client.post(
        "/api/v1/auth/password-reset/confirm", json={"reset_token": token, "new_password": newest}
    )
    assert confirmed.status_code == 204
    before.member = Person(before.member.id, before.member.email, newest, Role.MEMBER)

    assert client.get(QUEUE, headers=before.clinician_auth).status_code == 200

    auth = bearer(login(client, runtime, before.member))
    for cid, messages in before.histories.items():
        assert history(client, auth, cid) == messages
    assert holders_now(before, member_can_read=True)["member"] == len(before.histories)
