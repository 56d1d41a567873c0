"""Attachments: typed by their bytes, sealed per row, served only to who may read them."""

from __future__ import annotations

import json
import uuid

import pytest
from flask import Flask
from sqlalchemy import select, update

from access_control.roles import Role
from medchat.models import Attachment, Conversation, Message
from tests.support import sample_files as files
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.attachments import (
    BASELINE,
    CLINICIAN_DOWNLOAD,
    CLINICIAN_UPLOAD,
    MEMBER_DOWNLOAD,
    MEMBER_UPLOAD,
    Clinic,
    build_clinic,
    post_file,
    stored,
)
from tests.support.audit import audit_entries
from tests.support.dump import database_dump
from tests.support.messaging import asked, claim, give_consent
from tests.support.responses import error_code


@pytest.fixture
def clinic(app: Flask) -> Clinic:
    return build_clinic(app)


def test_member_upload_then_download_round_trips_cleaned_bytes_type_and_name(clinic):
    data = files.pdf("round trip")
    response = post_file(clinic, data, "résultats analyse.pdf")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body == {
        "id": body["id"],
        "filename": "résultats analyse.pdf",
        "content_type": "application/pdf",
        "size": len(files.as_stored(data)),
    }
    download = clinic.client.get(MEMBER_DOWNLOAD.format(body["id"]), headers=clinic.member_auth)
    assert download.status_code == 200
    assert download.data == files.as_stored(data)
    assert download.headers["Content-Type"] == "application/pdf"
    assert download.headers["Content-Disposition"] == (
        'attachment; filename="resultats analyse.pdf"; '
        "filename*=UTF-8''r%C3%A9sultats%20analyse.pdf"
    )
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Cache-Control"] == "no-store"
    assert download.headers["Content-Length"] == str(body["size"])


def test_each_accepted_type_is_typed_by_its_bytes_and_named_to_match(clinic):
    cases = [
        (files.png(), "scan", "application/octet-stream", "image/png", "scan.png"),
        (files.photo_jpeg(), "IMG_0042.JPG", "image/jpg", "image/jpeg", "IMG_0042.JPG"),
        (files.photo_heic(), "IMG_0043.HEIC", None, "image/heic", "IMG_0043.HEIC"),
        (files.pdf(), "../fakepath/page.html", "", "application/pdf", "page.html.pdf"),
    ]
    for data, name, declared, sniffed, stored_name in cases:
        response = post_file(clinic, data, name, declared or "application/octet-stream")
        assert response.status_code == 201, (name, response.get_json())
        assert response.get_json()["content_type"] == sniffed
        assert response.get_json()["filename"] == stored_name
        download = clinic.client.get(
            MEMBER_DOWNLOAD.format(response.get_json()["id"]), headers=clinic.member_auth
        )
        assert (download.data, download.headers["Content-Type"]) == (files.as_stored(data), sniffed)


def test_each_upload_is_a_message_of_its_own_with_the_attachment(clinic):
    first = post_file(clinic, files.pdf(), "bilan.pdf").get_json()
    second = post_file(clinic, files.png(), "radio.png").get_json()
    page = clinic.client.get(
        f"/api/v1/conversations/{clinic.conversation_id}/messages?order=asc",
        headers=clinic.member_auth,
    ).get_json()
    assert [(m["author"], m["attachments"]) for m in page["items"]] == [
        ("member", []),
        ("member", [first]),
        ("member", [second]),
    ]
    assert [m["body"] for m in page["items"][1:]] == ["", ""]
    with clinic.runtime.database.transaction() as session:
        conversation = session.get(Conversation, clinic.conversation_id)
        assert (conversation.message_count, conversation.status) == (3, "open")


def test_a_clinicians_file_answers_the_conversation_and_reads_are_audited(clinic):
    claim(clinic.client, clinic.clinician_auth, clinic.conversation_id)
    sent = post_file(
        clinic, files.png(), "schema.png", path=CLINICIAN_UPLOAD, auth=clinic.clinician_auth
    )
    assert sent.status_code == 201, sent.get_json()
    mine = post_file(clinic, files.pdf(), "bilan.pdf").get_json()
    with clinic.runtime.database.transaction() as session:
        authors = session.scalars(select(Message.author_role).order_by(Message.seq)).all()
        assert authors == ["member", "clinician", "member"]
        assert session.get(Conversation, clinic.conversation_id).status == "open"
    # The member opens the doctor's file; the doctor opens the member's.
    to_member = clinic.client.get(
        MEMBER_DOWNLOAD.format(sent.get_json()["id"]), headers=clinic.member_auth
    )
    to_clinician = clinic.client.get(
        CLINICIAN_DOWNLOAD.format(mine["id"]), headers=clinic.clinician_auth
    )
    assert (to_member.status_code, to_clinician.status_code) == (200, 200)
    assert to_clinician.data == files.as_stored(files.pdf())

    uploads = audit_entries(clinic.runtime, "attachment.upload")
    assert {e.subject_id for e in uploads} == {clinic.member.id}
    assert {e.target_id for e in uploads} == {str(clinic.conversation_id)}
    assert json.loads(uploads[-1].details) == {"attachment_id": mine["id"], "size": mine["size"]}
    for entry in uploads:  # the name and the type are content: never in the audit log
        assert "bilan" not in entry.details and "pdf" not in entry.details
        assert "schema" not in entry.details and "png" not in entry.details
    (read,) = audit_entries(clinic.runtime, "content.read.attachment")
    assert (read.actor_role, read.subject_id) == ("clinician", clinic.member.id)
    assert read.target_id == str(clinic.conversation_id)


@pytest.mark.parametrize(
    ("data", "name", "declared"),
    [
        (files.EXE, "setup.exe", "application/octet-stream"),
        (files.TEXT, "notes.txt", "text/plain"),
        (files.HTML, "page.pdf", "application/pdf"),
        (b"", "empty.pdf", "application/pdf"),
        (files.png(), "scan.png", "application/pdf"),  # PNG bytes declared as a PDF
        (files.pdf(), "x.png", "image/png"),  # PDF bytes named and declared as a PNG
        (files.pdf(), "x.png", "application/octet-stream"),  # ... or only named so
    ],
    ids=["exe", "text", "html", "empty", "png-declared-pdf", "pdf-as-png", "pdf-named-png"],
)
def test_refused_or_mislabelled_files_are_415_and_leave_nothing(clinic, data, name, declared):
    response = post_file(clinic, data, name, declared)
    assert (response.status_code, error_code(response)) == (415, "unsupported_media_type")
    assert stored(clinic.runtime) == BASELINE


def test_a_request_without_the_file_part_is_422(clinic):
    path = MEMBER_UPLOAD.format(clinic.conversation_id)
    attempts = [
        {"data": {"note": "hello"}, "content_type": "multipart/form-data"},
        {"data": {"file": "not a file part"}, "content_type": "multipart/form-data"},
        {"json": {"file": "aGVsbG8="}},
    ]
    for attempt in attempts:
        response = clinic.client.post(path, headers=clinic.member_auth, **attempt)
        assert (response.status_code, error_code(response)) == (422, "validation_error")
        assert "file" in response.get_json()["error"]["details"]
    assert stored(clinic.runtime) == BASELINE


def test_someone_elses_or_an_unknown_conversation_is_404(clinic):
    other = login(clinic.client, clinic.runtime, make_member(clinic.runtime))
    give_consent(clinic.client, other)
    other_conversation = uuid.UUID(asked(clinic.client, other))
    for target in (other_conversation, uuid.uuid4()):
        response = post_file(clinic, files.pdf(), "x.pdf", conversation_id=target)
        assert (response.status_code, error_code(response)) == (404, "not_found")
    assert stored(clinic.runtime) == (0, 2)


def test_another_members_attachment_is_404_like_an_unknown_one(clinic):
    sent = post_file(clinic, files.pdf(), "mine.pdf").get_json()
    other = bearer(login(clinic.client, clinic.runtime, make_member(clinic.runtime)))
    theirs = clinic.client.get(MEMBER_DOWNLOAD.format(sent["id"]), headers=other)
    unknown = clinic.client.get(MEMBER_DOWNLOAD.format(uuid.uuid4()), headers=other)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.get_json() == unknown.get_json()


def test_a_closed_conversation_or_withdrawn_consent_takes_no_files(clinic):
    close = f"/api/v1/clinician/conversations/{clinic.conversation_id}/close"
    before = post_file(clinic, files.pdf(), "x.pdf")  # consent still current: accepted
    assert before.status_code == 201
    assert clinic.client.delete("/api/v1/me/consent", headers=clinic.member_auth).status_code == 204
    for path, auth in (
        (MEMBER_UPLOAD, clinic.member_auth),
        (CLINICIAN_UPLOAD, clinic.clinician_auth),
    ):
        response = post_file(clinic, files.pdf(), "x.pdf", path=path, auth=auth)
        assert (response.status_code, error_code(response)) == (403, "consent_required")
    give_consent(clinic.client, clinic.member_tokens)
    assert clinic.client.post(close, headers=clinic.clinician_auth).status_code == 200
    for path, auth in (
        (MEMBER_UPLOAD, clinic.member_auth),
        (CLINICIAN_UPLOAD, clinic.clinician_auth),
    ):
        response = post_file(clinic, files.pdf(), "late.pdf", path=path, auth=auth)
        assert (response.status_code, error_code(response)) == (409, "conflict")
    assert stored(clinic.runtime) == (1, 2)
    # History stays readable after both.
    earlier = MEMBER_DOWNLOAD.format(before.get_json()["id"])
    history = clinic.client.get(earlier, headers=clinic.member_auth)
    assert history.data == files.as_stored(files.pdf())


def test_roles_without_the_route_permission_get_403(clinic):
    sent = post_file(clinic, files.pdf(), "x.pdf").get_json()
    admin = make_staff(clinic.runtime, Role.ADMIN)
    callers = {
        "admin": bearer(login(clinic.client, clinic.runtime, admin)),
        "clinician": clinic.clinician_auth,
        "member": clinic.member_auth,
    }
    refused = [
        ("admin", MEMBER_UPLOAD, MEMBER_DOWNLOAD),
        ("admin", CLINICIAN_UPLOAD, CLINICIAN_DOWNLOAD),
        ("clinician", MEMBER_UPLOAD, MEMBER_DOWNLOAD),
        ("member", CLINICIAN_UPLOAD, CLINICIAN_DOWNLOAD),
    ]
    for role, upload_path, download_path in refused:
        upload = post_file(clinic, files.pdf(), "x.pdf", path=upload_path, auth=callers[role])
        download = clinic.client.get(download_path.format(sent["id"]), headers=callers[role])
        for response in (upload, download):
            assert (response.status_code, error_code(response)) == (403, "forbidden"), role
    assert stored(clinic.runtime) == (1, 2)


def test_the_database_holds_neither_the_file_nor_its_name_in_clear(clinic):
    content_canary, name_canary = "CanaryQx7PdfBody", "CanaryQx7Name"
    data = files.pdf(content_canary)
    response = post_file(clinic, data, f"{name_canary} ordonnance.pdf")
    assert response.status_code == 201
    dump = database_dump(clinic.runtime.database.engine)
    for secret in (content_canary, name_canary, "ordonnance", "application/pdf", "%PDF-1.4"):
        assert secret.encode() not in dump, f"{secret!r} found in clear in the database"
        assert secret.encode("utf-16-le") not in dump
    assert data[:64] not in dump


def test_a_ciphertext_moved_to_another_attachment_is_refused_not_served(clinic):
    victim = post_file(clinic, files.pdf("secret"), "a.pdf").get_json()
    decoy = post_file(clinic, files.pdf("decoy"), "b.pdf").get_json()
    with clinic.runtime.database.transaction() as session:
        moved = session.get(Attachment, uuid.UUID(victim["id"]))
        session.execute(
            update(Attachment)
            .where(Attachment.id == uuid.UUID(decoy["id"]))
            .values(data_ciphertext=moved.data_ciphertext)
        )
    response = clinic.client.get(MEMBER_DOWNLOAD.format(decoy["id"]), headers=clinic.member_auth)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "key_integrity_failed"
    assert "Traceback" not in response.get_data(as_text=True)
    assert b"secret" not in response.data
    (failure,) = audit_entries(clinic.runtime, "attachment.integrity_failed")
    assert (failure.outcome, failure.subject_id) == ("failed", clinic.member.id)
    # The untouched attachment still opens.
    intact = clinic.client.get(MEMBER_DOWNLOAD.format(victim["id"]), headers=clinic.member_auth)
    assert intact.data == files.as_stored(files.pdf("secret"))


def test_a_ciphertext_moved_to_another_field_is_refused(clinic):
    sent = post_file(clinic, files.pdf(), "bilan.pdf").get_json()
    with clinic.runtime.database.transaction() as session:
        row = session.get(Attachment, uuid.UUID(sent["id"]))
        row.content_type_ciphertext = row.filename_ciphertext
    response = clinic.client.get(MEMBER_DOWNLOAD.format(sent["id"]), headers=clinic.member_auth)
    assert (response.status_code, error_code(response)) == (409, "key_integrity_failed")


def test_a_retry_with_the_same_idempotency_key_stores_one_file(clinic):
    first = post_file(clinic, files.pdf(), "bilan.pdf", key="upload-1")
    retry = post_file(clinic, files.pdf(), "bilan.pdf", key="upload-1")
    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.get_json() == first.get_json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    other_file = post_file(clinic, files.png(), "radio.png", key="upload-1")
    assert (other_file.status_code, error_code(other_file)) == (409, "conflict")
    assert stored(clinic.runtime) == (1, 2)


def test_the_openapi_document_describes_the_multipart_body(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    for path in (
        "/api/v1/conversations/{conversation_id}/attachments",
        "/api/v1/clinician/conversations/{conversation_id}/attachments",
    ):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        name = body["schema"]["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
        assert schema["required"] == ["file"]
        assert schema["properties"]["file"]["format"] == "binary"
    download = spec["paths"]["/api/v1/attachments/{attachment_id}"]["get"]["responses"]["200"]
    assert "application/pdf" in download["content"]


def test_an_upload_writes_its_message_with_a_time_ordered_id(clinic):
    """An upload is a message too (``ConversationService.append_message``): its id rises with
    time like every other message's (``tests/api/test_member_conversations.py``)."""
    assert post_file(clinic, files.pdf("ordered"), "bilan.pdf").status_code == 201
    with clinic.runtime.database.transaction() as session:
        uploaded = session.scalar(select(Message.id).join(Attachment).limit(1))
    assert uploaded is not None and uploaded.version == 7
