"""No log line holds content, a name, an e-mail address, a secret or an SQL parameter
(issue 13 item 10).

A whole exchange runs through the API and the console with a canary in every field a person
fills in: a member registers with a canary name, e-mail address, phone and insurance number,
fails a sign-in, asks with a canary subject and body, sends a canary file name, asks for a
canary path and a canary query string; a clinician answers in the console and through the
API with a canary answer; the member reads it, corrects their name and exports their data.
Every line the process wrote meanwhile (the service's JSON lines, the libraries', SQLAlchemy's
statement echo; everything at DEBUG) is searched for each canary in every encoding
``tests.support.leaks`` knows, and for the passwords, tokens and second-factor secret.
"""

from __future__ import annotations

import io

from access_control.roles import Role
from tests.support.accounts import PASSWORDS, Person, bearer, login
from tests.support.console import console_login, post_form
from tests.support.leaks import found_in
from tests.support.log_capture import captured_lines
from tests.support.messaging import CONVERSATIONS, care_team, give_consent
from tests.support.sample_files import pdf

CANARIES = {
    "first name": "Zenobie",
    "last name": "Canarybirdova",
    "new last name": "Canarywingsley",
    "email": "zenobie.canarybirdova@example.org",
    "phone": "+33 6 98 76 54 31",
    "insurance number": "INS-CANARY-77315",
    "subject": "Canary subject Q7 tingling",
    "question": "Canary question Q7: my left hand tingles at night",
    "answer": "Canary answer Q7: wear a wrist splint at night",
    "console answer": "Canary console answer Q7: come and see me",
    "follow-up": "Canary follow-up Q7: thank you doctor",
    "file name": "canary-scan-q7.pdf",
    "path segment": "canary-path-segment-q7",
    "query string": "canary-query-string-q7",
    "bad body": "canary-not-json-q7",
}
PASSWORD = "vellum-quasar-tundra-64"


def _scenario(client, runtime) -> dict[str, str]:
    """The exchange; returns the secrets it handled (tokens, second-factor secret)."""
    team = care_team(runtime)
    registered = client.post(
        "/api/v1/auth/register",
        json={
            "email": CANARIES["email"],
            "password": PASSWORD,
            "first_name": CANARIES["first name"],
            "last_name": CANARIES["last name"],
            "birth_date": "1979-05-03",
            "sex": "female",
            "phone": CANARIES["phone"],
            "insurance_number": CANARIES["insurance number"],
        },
    )
    assert registered.status_code == 202, registered.get_json()
    wrong = client.post(
        "/api/v1/auth/token", json={"email": CANARIES["email"], "password": PASSWORD + "x"}
    )
    assert wrong.status_code == 401
    member = Person(None, CANARIES["email"], PASSWORD, Role.MEMBER)
    tokens = login(client, runtime, member)
    auth = bearer(tokens)
    give_consent(client, tokens)

    asked = client.post(
        CONVERSATIONS,
        json={
            "subject": CANARIES["subject"],
            "body": CANARIES["question"],
            "emergency_notice": "2026-12",
        },
        headers=auth,
    )
    assert asked.status_code == 201, asked.get_json()
    conversation = asked.get_json()["id"]
    upload = client.post(
        f"{CONVERSATIONS}/{conversation}/attachments",
        headers=auth,
        data={"file": (io.BytesIO(pdf("scan")), CANARIES["file name"], "application/pdf")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 201, upload.get_json()
    assert client.get(f"{CONVERSATIONS}/{CANARIES['path segment']}", headers=auth).status_code in (
        404,
        405,
    )
    assert client.get(
        f"{CONVERSATIONS}?cursor={CANARIES['query string']}", headers=auth
    ).status_code in (400, 422)
    not_json = client.post(
        CONVERSATIONS, data=CANARIES["bad body"], headers=auth, content_type="application/json"
    )
    assert not_json.status_code == 400

    # The clinician: the console page of the conversation and an answer there, then the API.
    console = client.application.test_client()
    console_login(console, runtime, team.clinician)
    page = console.get(f"/console/conversations/{conversation}")
    assert page.status_code == 200
    assert CANARIES["subject"] in page.get_data(as_text=True)
    claimed = post_form(
        console,
        f"/console/conversations/{conversation}/claim",
        {},
        page=f"/console/conversations/{conversation}",
    )
    assert claimed.status_code == 302, claimed.get_data(as_text=True)[:300]
    answered = post_form(
        console,
        f"/console/conversations/{conversation}/reply",
        {"body": CANARIES["console answer"]},
        page=f"/console/conversations/{conversation}",
    )
    assert answered.status_code == 302, answered.get_data(as_text=True)[:300]
    doctor_tokens = login(client, runtime, team.clinician)
    doctor = bearer(doctor_tokens)
    assert client.get("/api/v1/clinician/queue?status=answered", headers=doctor).status_code == 200
    reply = client.post(
        f"/api/v1/clinician/conversations/{conversation}/messages",
        json={"body": CANARIES["answer"]},
        headers=doctor,
    )
    assert reply.status_code == 201, reply.get_json()

    # The member reads, follows up, corrects their name and takes their data away.
    messages = client.get(f"{CONVERSATIONS}/{conversation}/messages", headers=auth)
    assert CANARIES["answer"] in messages.get_data(as_text=True)
    follow_up = client.post(
        f"{CONVERSATIONS}/{conversation}/messages",
        json={"body": CANARIES["follow-up"]},
        headers=auth,
    )
    assert follow_up.status_code == 201, follow_up.get_json()
    corrected = client.patch(
        "/api/v1/me",
        json={"last_name": CANARIES["new last name"]},
        headers=auth,
    )
    assert corrected.status_code == 200, corrected.get_json()
    exported = client.get("/api/v1/me/export", headers=auth)
    assert CANARIES["new last name"] in exported.get_data(as_text=True)
    return {
        "member password": PASSWORD,
        "clinician password": PASSWORDS[Role.CLINICIAN],
        "member access token": tokens["access_token"],
        "member refresh token": tokens["refresh_token"],
        "clinician access token": doctor_tokens["access_token"],
        "clinician TOTP secret": team.clinician.totp_secret or "",
    }


def test_a_whole_exchange_leaves_no_canary_or_secret_in_any_log_line(client, runtime):
    with captured_lines() as lines:
        secrets = _scenario(client, runtime)

    records = lines.records()  # every line is one JSON object
    requests = lines.requests()
    # The capture saw the service at work: its request lines, and SQL statements.
    assert len(requests) >= 20
    assert any(r.get("logger", "").startswith("sqlalchemy.engine") for r in records)
    assert {r["actor_role"] for r in requests} >= {"member", "clinician", "anonymous"}
    leaks = found_in(lines.text.encode("utf-8"), {**CANARIES, **secrets})
    assert leaks == []
