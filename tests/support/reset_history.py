"""A member with a history (questions, an answer, an attachment, a closed case) who then resets
their password by mail, through the real HTTP endpoints; and how they read it back.

``tests/api/test_history_after_reset.py`` follows that history through the reset (SECURITY-MODEL
key hierarchy 7); the member's export and the account deletion tests start from the same
member, to show what they hold of a history the member cannot yet read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from flask import Flask

from access_control.roles import Role
from medchat.services.context import ServiceContext
from tests.support.accounts import Person, bearer, login, make_member
from tests.support.mailbox import delivered, reset_token_in
from tests.support.messaging import CareTeam, asked, care_team, claim, give_consent, send
from tests.support.sample_files import png

CONVERSATIONS = "/api/v1/conversations"
NEW_PASSWORD = "lichen-tundra-pelican-86"
PICTURE = png(2, 2)


@dataclass
class Before:
    """What the member could read before the reset, to compare with after."""

    app: Flask
    client: Any
    runtime: ServiceContext
    team: CareTeam
    member: Person
    clinician_auth: dict[str, str]
    listed: dict[str, dict[str, Any]]
    histories: dict[str, list[dict[str, Any]]]
    attachment_id: str


def history(client, auth, conversation_id: str) -> list[dict[str, Any]]:
    response = client.get(
        f"{CONVERSATIONS}/{conversation_id}/messages?order=asc&limit=100", headers=auth
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]  # type: ignore[no-any-return]


def listing(client, auth) -> dict[str, dict[str, Any]]:
    response = client.get(CONVERSATIONS, headers=auth)
    assert response.status_code == 200, response.get_json()
    return {item["id"]: item for item in response.get_json()["items"]}


def a_member_after_reset(app: Flask, mail_dir, conversations: int = 2) -> Before:
    """Questions, answers, an attachment and a closed case; then a reset by mail."""
    runtime: ServiceContext = app.extensions["medchat"]
    client = app.test_client()
    team = care_team(runtime)
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    clinician_auth = bearer(login(client, runtime, team.clinician))
    ids = [
        asked(client, tokens, f"Question {n}: my knee hurts.", subject=f"Knee {n}")
        for n in range(conversations)
    ]
    first = ids[0]
    claim(client, clinician_auth, first)
    answered = client.post(
        f"/api/v1/clinician/conversations/{first}/messages",
        json={"body": "Rest it and ice it twice a day."},
        headers=clinician_auth,
    )
    assert answered.status_code == 201
    assert (
        send(client, tokens, f"{CONVERSATIONS}/{first}/messages", "Thank you.").status_code == 201
    )
    upload = client.post(
        f"{CONVERSATIONS}/{first}/attachments",
        headers=bearer(tokens),
        data={"file": (io.BytesIO(PICTURE), "knee.png", "image/png")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 201, upload.get_json()
    if conversations > 1:
        closed = client.post(
            f"/api/v1/clinician/conversations/{ids[1]}/close", headers=clinician_auth
        )
        assert closed.status_code == 200
    before = Before(
        app,
        client,
        runtime,
        team,
        member,
        clinician_auth,
        listing(client, bearer(tokens)),
        {cid: history(client, bearer(tokens), cid) for cid in ids},
        upload.get_json()["id"],
    )
    assert (
        client.post("/api/v1/auth/password-reset", json={"email": member.email}).status_code == 202
    )
    token = reset_token_in(delivered(runtime, mail_dir)[-1][0])
    confirmed = client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"reset_token": token, "new_password": NEW_PASSWORD},
    )
    assert confirmed.status_code == 204, confirmed.get_json()
    before.member = Person(member.id, member.email, NEW_PASSWORD, Role.MEMBER)
    return before
