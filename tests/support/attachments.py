"""Attachment test helpers: a care team, a consenting member with a question, uploads."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from medchat.models import Attachment, Message
from medchat.services.context import ServiceContext
from tests.support.accounts import Person, bearer, login, make_member
from tests.support.messaging import CareTeam, asked, care_team, give_consent

MEMBER_UPLOAD = "/api/v1/conversations/{}/attachments"
CLINICIAN_UPLOAD = "/api/v1/clinician/conversations/{}/attachments"
MEMBER_DOWNLOAD = "/api/v1/attachments/{}"
CLINICIAN_DOWNLOAD = "/api/v1/clinician/attachments/{}"


@dataclass
class Clinic:
    """A consenting member with an open question, and a clinician holding the physician key."""

    app: Flask
    client: Any
    runtime: ServiceContext
    member: Person
    member_tokens: dict[str, Any]
    member_auth: dict[str, str]
    clinician_auth: dict[str, str]
    conversation_id: uuid.UUID
    team: CareTeam


def build_clinic(app: Flask) -> Clinic:
    runtime: ServiceContext = app.extensions["medchat"]
    client = app.test_client()
    team = care_team(runtime)
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    conversation_id = uuid.UUID(asked(client, tokens))
    return Clinic(
        app,
        client,
        runtime,
        member,
        tokens,
        bearer(tokens),
        bearer(login(client, runtime, team.clinician)),
        conversation_id,
        team,
    )


def post_file(
    clinic: Clinic,
    data: bytes,
    filename: str,
    content_type: str | None = None,
    *,
    path: str = MEMBER_UPLOAD,
    auth: dict[str, str] | None = None,
    conversation_id: uuid.UUID | None = None,
    key: str | None = None,
) -> Any:
    """Upload through the API; without ``content_type`` the test client guesses from the name."""
    headers = dict(auth or clinic.member_auth)
    if key is not None:
        headers["Idempotency-Key"] = key
    return clinic.client.post(
        path.format(conversation_id or clinic.conversation_id),
        headers=headers,
        data={"file": (io.BytesIO(data), filename, content_type)},
        content_type="multipart/form-data",
    )


#: What ``build_clinic`` leaves: no attachment, the question's message.
BASELINE = (0, 1)


def stored(runtime: ServiceContext) -> tuple[int, int]:
    with runtime.database.transaction() as session:
        return (
            session.scalar(select(func.count()).select_from(Attachment)),
            session.scalar(select(func.count()).select_from(Message)),
        )
