"""The member's access log (API.md ``GET /api/v1/me/access-log``; SECURITY-MODEL
"Transparency for the member"): who touched their data, read from the audit trail.

Clinicians appear by the display name members see on messages, compliance officers as
"compliance", retention as "system"; the member's own actions and anything about another
member never appear, nor any staff e-mail or account id. Pages are newest first, keyset on
the audit sequence number, with an opaque cursor.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat import audit
from medchat.models import ArchiveRecord, AuditEntry
from tests.support.accounts import bearer, login, make_staff
from tests.support.archive import archive_colleague
from tests.support.compliance import JUSTIFICATION
from tests.support.messaging import CONVERSATIONS
from tests.support.rights import ACCESS_LOG, CLINICIAN, a_member_with_history

ARCHIVE = "/api/v1/compliance/archive"
RETRIEVALS = "/api/v1/compliance/retrievals"


@pytest.fixture
def history(client, runtime):
    return a_member_with_history(client, runtime)


def log(client, auth, query: str = "") -> dict:
    response = client.get(ACCESS_LOG + query, headers=auth)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def walk(client, auth, limit: int) -> list[dict]:
    items, cursor = [], None
    for _ in range(100):
        page = log(client, auth, f"?limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the cursor never ended")


def test_clinician_reads_replies_and_closes_are_listed_newest_first(client, runtime, history):
    read = client.get(
        f"{CLINICIAN}/conversations/{history.answered_id}", headers=history.doctor_auth
    )
    assert read.status_code == 200
    messages = client.get(
        f"{CLINICIAN}/conversations/{history.answered_id}/messages", headers=history.doctor_auth
    )
    assert messages.status_code == 200

    page = log(client, history.auth)
    assert page["next_cursor"] is None
    items = page["items"]
    assert [(i["actor"], i["action"], i["conversation_id"]) for i in items] == [
        ("Dr. M.", "read", history.answered_id),
        ("Dr. M.", "read", history.answered_id),
        ("Dr. M.", "close", history.closed_id),
        ("Dr. M.", "reply", history.answered_id),
    ]
    for item in items:
        assert set(item) == {"at", "actor", "action", "conversation_id"}
        assert item["at"].endswith("Z")
    assert [i["at"] for i in items] == sorted((i["at"] for i in items), reverse=True)


def test_the_members_own_actions_and_other_members_are_never_listed(client, runtime, history):
    """The member asked, wrote, uploaded and consented (all audited with them as subject);
    the clinician read the other member's conversation: none of it is in this log."""
    with runtime.database.transaction() as session:
        own = session.scalars(
            select(AuditEntry).where(
                AuditEntry.subject_id == history.member.id,
                AuditEntry.actor_id == history.member.id,
            )
        ).all()
    assert {e.action for e in own} >= {
        "conversation.start",
        "message.send",
        "attachment.upload",
        "consent.grant",
    }
    text = client.get(ACCESS_LOG, headers=history.auth).get_data(as_text=True)
    assert history.others_id not in text
    for secret in (history.team.clinician.email, str(history.team.clinician.id)):
        assert secret not in text
    assert {i["action"] for i in log(client, history.auth)["items"]} == {"reply", "close"}

    others = log(client, history.other_auth)["items"]
    assert [(i["action"], i["conversation_id"]) for i in others] == [("read", history.others_id)]
    for item in others:
        assert item["conversation_id"] not in (history.answered_id, history.closed_id)


def test_a_clinician_upload_is_a_reply(client, runtime, history):
    import io

    from tests.support.sample_files import pdf

    upload = client.post(
        f"{CLINICIAN}/conversations/{history.answered_id}/attachments",
        headers=history.doctor_auth,
        data={"file": (io.BytesIO(pdf("x")), "leaflet.pdf", "application/pdf")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 201, upload.get_json()
    newest = log(client, history.auth)["items"][0]
    assert (newest["actor"], newest["action"], newest["conversation_id"]) == (
        "Dr. M.",
        "reply",
        history.answered_id,
    )


def test_a_second_clinician_is_shown_by_their_own_display_name(client, runtime, history):
    colleague = make_staff(runtime, Role.CLINICIAN, first_name="Bea", last_name="Nguyen")
    colleague_auth = bearer(login(client, runtime, colleague))
    grant = client.post(f"{CLINICIAN}/colleagues/{colleague.id}/grant", headers=history.doctor_auth)
    assert grant.status_code == 200, grant.get_json()
    colleague_auth = bearer(login(client, runtime, colleague))
    assert (
        client.get(
            f"{CLINICIAN}/conversations/{history.closed_id}", headers=colleague_auth
        ).status_code
        == 200
    )
    newest = log(client, history.auth)["items"][0]
    assert (newest["actor"], newest["action"]) == ("Dr. N.", "read")
    assert colleague.email not in client.get(ACCESS_LOG, headers=history.auth).get_data(
        as_text=True
    )


def test_compliance_retrieval_steps_are_listed_as_compliance(client, runtime, history):
    assert client.delete(f"{CONVERSATIONS}/{history.closed_id}", headers=history.auth).status_code
    a = bearer(login(client, runtime, history.team.compliance))
    second = archive_colleague(runtime, history.team.compliance)
    b = bearer(login(client, runtime, second))
    found = client.post(
        f"{ARCHIVE}/search", json={"member_email": history.member.email}, headers=a
    ).get_json()
    (record,) = found["items"]
    asked = client.post(
        f"{ARCHIVE}/{record['id']}/retrievals", json={"justification": JUSTIFICATION}, headers=a
    )
    assert asked.status_code == 201
    retrieval = asked.get_json()["id"]
    # Refused steps (self-approval) opened nothing and are not listed.
    assert client.post(f"{RETRIEVALS}/{retrieval}/approve", headers=a).status_code == 403
    assert client.post(f"{RETRIEVALS}/{retrieval}/approve", headers=b).status_code == 200
    assert client.get(f"{RETRIEVALS}/{retrieval}/content", headers=a).status_code == 200

    items = log(client, history.auth)["items"]
    compliance = [i for i in items if i["actor"] == "compliance"]
    assert [(i["action"], i["conversation_id"]) for i in compliance] == [
        ("retrieval", history.closed_id),  # open
        ("retrieval", history.closed_id),  # approve
        ("retrieval", history.closed_id),  # request
        ("retrieval", None),  # the search named the member, no conversation
    ]
    text = client.get(ACCESS_LOG, headers=history.auth).get_data(as_text=True)
    for officer in (history.team.compliance, second):
        assert officer.email not in text and str(officer.id) not in text
    # The other member's archive was never searched nor opened.
    assert all(i["actor"] != "compliance" for i in log(client, history.other_auth)["items"])


def test_retention_entries_are_listed_as_system(client, runtime, history):
    """Retention (another module) audits destroy, seal and archive_destroy with the member as
    subject and no signed-in actor; each reads as "retention" by "system"."""
    assert client.delete(f"{CONVERSATIONS}/{history.closed_id}", headers=history.auth).status_code
    with runtime.database.transaction() as session:
        record_id = session.scalar(
            select(ArchiveRecord.id).where(
                ArchiveRecord.conversation_id == uuid.UUID(history.closed_id)
            )
        )
    with runtime.database.transaction() as session:
        audit.set_context(session, audit.AuditContext(actor_role="system"))
        audit.record(
            session,
            "retention.seal",
            target_type="conversation",
            target_id=history.answered_id,
            subject_id=history.member.id,
        )
        audit.record(
            session,
            "retention.destroy",
            target_type="conversation",
            target_id=history.answered_id,
            subject_id=history.member.id,
        )
        audit.record(
            session,
            "retention.archive_destroy",
            target_type="archive_record",
            target_id=record_id,
            subject_id=history.member.id,
            details={"record_id": str(record_id)},
        )
        audit.record(
            session,
            "retention.destroy",
            target_type="conversation",
            target_id=history.others_id,
            subject_id=history.other.id,
        )
    newest = log(client, history.auth, "?limit=3")["items"]
    assert [(i["actor"], i["action"], i["conversation_id"]) for i in newest] == [
        ("system", "retention", history.closed_id),
        ("system", "retention", history.answered_id),
        ("system", "retention", history.answered_id),
    ]


def test_pages_walk_every_entry_once_newest_first(client, runtime, history):
    for _ in range(7):
        path = f"{CLINICIAN}/conversations/{history.answered_id}"
        assert client.get(path, headers=history.doctor_auth).status_code == 200
    everything = log(client, history.auth, "?limit=100")["items"]
    assert len(everything) == 9
    for limit in (1, 2, 4, 9):
        assert walk(client, history.auth, limit) == everything
    first = log(client, history.auth, "?limit=4")
    assert len(first["items"]) == 4 and first["next_cursor"]
    assert log(client, history.auth)["items"] == everything  # default limit 50


@pytest.mark.parametrize(
    "query",
    ["?limit=0", "?limit=101", "?limit=x", "?cursor=not-a-cursor", "?cursor=IngiXQ"],
)
def test_bad_page_arguments_are_422(client, history, query):
    response = client.get(ACCESS_LOG + query, headers=history.auth)
    assert response.status_code == 422, query
    assert response.get_json()["error"]["code"] == "validation_error"


def test_staff_cannot_read_an_access_log(client, runtime, history):
    for person in (
        history.team.clinician,
        history.team.compliance,
        make_staff(runtime, Role.ADMIN),
    ):
        response = client.get(ACCESS_LOG, headers=bearer(login(client, runtime, person)))
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "forbidden"
    assert client.get(ACCESS_LOG).status_code == 401


def test_reading_the_log_changes_no_audit_and_the_chain_verifies(client, runtime, history):
    with runtime.database.transaction() as session:
        before = session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1))
    log(client, history.auth)
    with runtime.database.transaction() as session:
        after = session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1))
        assert audit.verify(session, runtime.keys.audit_mac).ok
    assert after == before
