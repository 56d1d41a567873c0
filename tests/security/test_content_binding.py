"""A database writer cannot relabel or move content (SECURITY-MODEL key hierarchy 10).

Issue 11, finding 6: swapping ``messages.author_role`` or ``seq`` in SQL showed a member's
words as the doctor's, in another order, and an attachment moved to another message went
with it, with no integrity error. Each test here walks the honest path (every surface shows
the conversation), changes rows with raw SQL as someone who can write the database would, and
reads again through every surface that shows messages: the member API, the clinician API, the
console page, the member's export (JSON and FHIR) and the attachment download. Each refuses
with ``409 key_integrity_failed`` (the console with a 409 page), never a 500 or a trace, and
never shows the relabelled content. (A list that serves the rest and marks the one
conversation unreadable is a refusal too: the export may do that.)
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from access_control.roles import Role
from medchat.models import AuditEntry, Message
from medchat.services.context import ServiceContext
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.console import console_login
from tests.support.messaging import CONVERSATIONS, asked, care_team, claim, give_consent, send
from tests.support.rights import EXPORT
from tests.support.sample_files import as_stored, pdf
from tests.support.tampering import execute_sql

QUESTION = "CanaryQuestion: my chest hurts when I climb stairs."
ANSWER = "CanaryAnswer: please call the emergency number now."
FOLLOW_UP = "CanaryFollowUp: it stopped after ten minutes."
FILE = pdf("CanaryFile")
CONTENT = (QUESTION, ANSWER, FOLLOW_UP, "CanaryFile")


@dataclass(repr=False)
class Scene:
    """A member's conversation (question, doctor's answer, follow-up, a file) and a second one,
    with the member, the doctor (API and console) and a colleague who could be named."""

    app: Flask
    runtime: ServiceContext
    client: Any
    console: Any
    member_auth: dict[str, str]
    clinician_auth: dict[str, str]
    colleague_id: uuid.UUID
    member_id: uuid.UUID
    conversation_id: uuid.UUID
    other_id: uuid.UUID
    #: message ids by sequence number in ``conversation_id`` (4 carries the attachment)
    messages: dict[int, uuid.UUID]
    attachment_id: uuid.UUID


@pytest.fixture
def scene(app: Flask) -> Scene:
    runtime: ServiceContext = app.extensions["medchat"]
    client = app.test_client()
    team = care_team(runtime)
    colleague = make_staff(runtime, Role.CLINICIAN, first_name="Bea", last_name="Roux")
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    conversation_id = uuid.UUID(asked(client, tokens, QUESTION))
    clinician_auth = bearer(login(client, runtime, team.clinician))
    path = f"/api/v1/clinician/conversations/{conversation_id}/messages"
    claim(client, clinician_auth, conversation_id)
    assert client.post(path, json={"body": ANSWER}, headers=clinician_auth).status_code == 201
    messages_path = f"{CONVERSATIONS}/{conversation_id}/messages"
    assert send(client, tokens, messages_path, FOLLOW_UP).status_code == 201
    uploaded = client.post(
        f"{CONVERSATIONS}/{conversation_id}/attachments",
        headers=bearer(tokens),
        data={"file": (io.BytesIO(FILE), "report.pdf", "application/pdf")},
        content_type="multipart/form-data",
    )
    assert uploaded.status_code == 201, uploaded.get_json()
    other_id = uuid.UUID(asked(client, tokens, "Another question."))
    console = app.test_client()
    console_login(console, runtime, team.clinician)
    with runtime.database.transaction() as session:
        messages = dict(
            session.execute(
                select(Message.seq, Message.id).where(Message.conversation_id == conversation_id)
            ).all()
        )
    return Scene(
        app,
        runtime,
        client,
        console,
        bearer(tokens),
        clinician_auth,
        colleague.id,
        member.id,
        conversation_id,
        other_id,
        messages,
        uuid.UUID(uploaded.get_json()["id"]),
    )


def surfaces(scene: Scene, conversation_id: uuid.UUID) -> dict[str, Any]:
    """Every surface that shows this conversation's messages, read now."""
    client = scene.client
    return {
        "member API": client.get(
            f"{CONVERSATIONS}/{conversation_id}/messages?limit=50", headers=scene.member_auth
        ),
        "clinician API": client.get(
            f"/api/v1/clinician/conversations/{conversation_id}/messages?limit=50",
            headers=scene.clinician_auth,
        ),
        "console page": scene.console.get(f"/console/conversations/{conversation_id}"),
        "export JSON": client.get(EXPORT, headers=scene.member_auth),
        "export FHIR": client.get(EXPORT + "?format=fhir", headers=scene.member_auth),
    }


def assert_refused(
    responses: dict[str, Any], conversation_id: uuid.UUID, still_readable: tuple[str, ...] = ()
) -> None:
    """Every surface refuses the conversation. ``still_readable``: content of *another*,
    untouched conversation, which an export of everything may show beside the refusal."""
    for surface, response in responses.items():
        text = response.get_data(as_text=True)
        assert "Traceback" not in text and 'File "' not in text, surface
        for content in CONTENT:
            if surface.startswith("export") and content in still_readable:
                continue
            assert content not in text, (surface, content)
        if surface.startswith("export") and response.status_code == 200:
            # Served without the refused conversation's content.
            if response.is_json and "conversations" in response.get_json():
                (listed,) = [
                    c
                    for c in response.get_json()["conversations"]
                    if c["id"] == str(conversation_id)
                ]
                assert listed["readable"] is False and listed["messages"] == [], surface
            continue
        assert response.status_code == 409, (surface, response.status_code, text[:300])
        if response.is_json:
            assert response.get_json()["error"]["code"] == "key_integrity_failed", surface


def integrity_failures(runtime: ServiceContext) -> list[AuditEntry]:
    with runtime.database.transaction() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.outcome == "failed"))
        return [entry for entry in entries if "integrity" in entry.action]


def test_every_surface_shows_the_untouched_conversation(scene):
    for surface, response in surfaces(scene, scene.conversation_id).items():
        assert response.status_code == 200, surface
        text = response.get_data(as_text=True)
        assert QUESTION in text and ANSWER in text and FOLLOW_UP in text, surface
    download = scene.client.get(
        f"/api/v1/attachments/{scene.attachment_id}", headers=scene.member_auth
    )
    assert download.data == as_stored(FILE)
    assert integrity_failures(scene.runtime) == []


def _swap_author_roles(scene: Scene) -> None:
    """The member's question shown as the doctor's, the doctor's answer as the member's."""
    sql = "UPDATE messages SET author_role = :role WHERE id = :id"
    execute_sql(scene.runtime, sql, role="clinician", id=scene.messages[1])
    execute_sql(scene.runtime, sql, role="member", id=scene.messages[2])


def _swap_seq(scene: Scene) -> None:
    """The question and the follow-up change places (the unique (conversation, seq) pair is
    kept by stepping through a free number)."""
    sql = "UPDATE messages SET seq = :seq WHERE id = :id"
    execute_sql(scene.runtime, sql, seq=-1, id=scene.messages[1])
    execute_sql(scene.runtime, sql, seq=1, id=scene.messages[3])
    execute_sql(scene.runtime, sql, seq=3, id=scene.messages[1])


def _change_author_id(scene: Scene) -> None:
    """The doctor's answer credited to a colleague who never wrote it."""
    execute_sql(
        scene.runtime,
        "UPDATE messages SET author_id = :author WHERE id = :id",
        author=scene.colleague_id,
        id=scene.messages[2],
    )


def _move_attachment(scene: Scene) -> None:
    """The file moved from its own message onto the member's question."""
    execute_sql(
        scene.runtime,
        "UPDATE attachments SET message_id = :message WHERE id = :id",
        message=scene.messages[1],
        id=scene.attachment_id,
    )


ATTACKS: dict[str, Callable[[Scene], None]] = {
    "author roles swapped": _swap_author_roles,
    "sequence numbers swapped": _swap_seq,
    "author id changed": _change_author_id,
    "attachment moved to another message": _move_attachment,
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_relabelled_rows_are_refused_on_every_surface(scene, attack):
    ATTACKS[attack](scene)

    assert_refused(surfaces(scene, scene.conversation_id), scene.conversation_id)


def test_an_attachment_moved_to_another_message_is_not_downloaded(scene):
    _move_attachment(scene)
    for path, auth in (
        (f"/api/v1/attachments/{scene.attachment_id}", scene.member_auth),
        (f"/api/v1/clinician/attachments/{scene.attachment_id}", scene.clinician_auth),
    ):
        response = scene.client.get(path, headers=auth)
        assert response.status_code == 409
        assert response.get_json()["error"]["code"] == "key_integrity_failed"
        assert b"CanaryFile" not in response.data
    failures = integrity_failures(scene.runtime)
    assert [(e.action, e.subject_id) for e in failures] == [
        ("attachment.integrity_failed", scene.member_id)
    ] * 2


def test_a_message_moved_to_another_conversation_is_refused_there(scene):
    execute_sql(
        scene.runtime,
        "UPDATE messages SET conversation_id = :other, seq = 2 WHERE id = :id",
        other=scene.other_id,
        id=scene.messages[3],
    )

    # The export of everything still shows the untouched messages of the first conversation.
    assert_refused(
        surfaces(scene, scene.other_id), scene.other_id, (QUESTION, ANSWER, "CanaryFile")
    )
    # Where it came from, the rest still reads (nothing was relabelled there).
    response = scene.client.get(
        f"{CONVERSATIONS}/{scene.conversation_id}/messages", headers=scene.member_auth
    )
    assert response.status_code == 200
    bodies = [m["body"] for m in response.get_json()["items"]]
    assert bodies == ["", ANSWER, QUESTION]
