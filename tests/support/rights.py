"""A member with a history worth exporting, logging and erasing, made through the real API.

One conversation asked with a subject, answered by a clinician, with a PDF attached by the
member; a second one closed by the clinician. A second member with a conversation of their
own lets each test check that nothing of theirs shows up.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from medchat.services.context import ServiceContext
from tests.support.accounts import Person, bearer, login, make_member
from tests.support.messaging import (
    CONVERSATIONS,
    CareTeam,
    asked,
    care_team,
    claim,
    give_consent,
    send,
)
from tests.support.sample_files import as_stored, pdf

CLINICIAN = "/api/v1/clinician"
ME = "/api/v1/me"
EXPORT = "/api/v1/me/export"
ACCESS_LOG = "/api/v1/me/access-log"
DELETION = "/api/v1/me/deletion"

SUBJECT = "Rights canary subject R5"
QUESTION = "Rights canary question R5: my ankle is swollen"
ANSWER = "Rights canary answer R5: keep it raised"
FOLLOW_UP = "Rights canary follow-up R5: thank you"
SECOND_QUESTION = "Rights canary second question R5"
OTHERS_QUESTION = "Someone else's canary question Z8"
FILE_NAME = "ankle-r5.pdf"
FILE_BYTES = pdf("ankle")
#: What medchat keeps of it: the file cleaned of its metadata (its size is this one's).
FILE_STORED = as_stored(FILE_BYTES)


@dataclass
class History:
    team: CareTeam
    member: Person
    tokens: dict[str, Any]
    auth: dict[str, str]
    doctor_auth: dict[str, str]
    answered_id: str
    closed_id: str
    attachment_id: str
    other: Person
    other_auth: dict[str, str]
    others_id: str


def a_member_with_history(
    client: Any, runtime: ServiceContext, team: CareTeam | None = None
) -> History:
    team = team or care_team(runtime)
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    auth = bearer(tokens)
    doctor = bearer(login(client, runtime, team.clinician))
    answered = asked(client, tokens, QUESTION, subject=SUBJECT)
    claim(client, doctor, answered)
    reply = client.post(
        f"{CLINICIAN}/conversations/{answered}/messages", json={"body": ANSWER}, headers=doctor
    )
    assert reply.status_code == 201, reply.get_json()
    assert (
        send(client, tokens, f"{CONVERSATIONS}/{answered}/messages", FOLLOW_UP).status_code == 201
    )
    upload = client.post(
        f"{CONVERSATIONS}/{answered}/attachments",
        headers=auth,
        data={"file": (io.BytesIO(FILE_BYTES), FILE_NAME, "application/pdf")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 201, upload.get_json()
    runtime.clock.advance(minutes=5)  # type: ignore[attr-defined]
    closed = asked(client, tokens, SECOND_QUESTION)
    assert (
        client.post(f"{CLINICIAN}/conversations/{closed}/close", headers=doctor).status_code == 200
    )

    other = make_member(runtime, first_name="Zoe", last_name="Otherperson")
    other_tokens = login(client, runtime, other)
    give_consent(client, other_tokens)
    others = asked(client, other_tokens, OTHERS_QUESTION, subject="Other subject Z8")
    assert (
        client.get(f"{CLINICIAN}/conversations/{others}/messages", headers=doctor).status_code
        == 200
    )
    return History(
        team,
        member,
        tokens,
        auth,
        doctor,
        answered,
        closed,
        upload.get_json()["id"],
        other,
        bearer(other_tokens),
        others,
    )
