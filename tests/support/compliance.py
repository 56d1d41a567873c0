"""The compliance officers' routes driven through the real API: a sealed conversation with its
three officers, and the four-eyes steps (search, ask, approve, open) as HTTP requests.

Both halves of the compliance tests (``tests/api/test_compliance.py``, the finding and the
four eyes; ``tests/api/test_compliance_evidence.py``, the export, the verification and the
audit) start from the same sealed record and walk the same steps, so they are made here once.
The canary texts are what no search result and no audit entry may ever hold.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from access_control.roles import Role
from tests.support.accounts import Person, bearer, login, make_member, make_staff
from tests.support.messaging import CONVERSATIONS, asked, care_team, claim, give_consent
from tests.support.sample_files import pdf

ARCHIVE = "/api/v1/compliance/archive"
RETRIEVALS = "/api/v1/compliance/retrievals"
SUBJECT = "Archive canary subject K4"
BODY = "Archive canary body K4: my blood test results"
REPLY = "Archive canary reply K4: the values are normal"
JUSTIFICATION = "Court order 2026-117 requires the exchange of March (case of J. Doe)."
ATTACHMENT = pdf("K4 results")


@dataclass
class Archive:
    member: Person
    conversation_id: str
    message_ids: list[str]
    attachment_id: str
    record_id: str
    a: dict[str, str]
    b: dict[str, str]
    c: dict[str, str]
    officers: dict[str, Person]


def sealed_archive(client, runtime) -> Archive:
    """A sealed conversation (question, reply, attachment) and three compliance officers:
    A holds the archive key (``keys init``) and granted it to B; C does not hold it."""
    team = care_team(runtime)
    member = make_member(runtime, email="k4.member@example.org")
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    conversation_id = asked(client, tokens, BODY, subject=SUBJECT)
    doctor = bearer(login(client, runtime, team.clinician))
    claim(client, doctor, conversation_id)
    reply = client.post(
        f"/api/v1/clinician/conversations/{conversation_id}/messages",
        json={"body": REPLY},
        headers=doctor,
    )
    assert reply.status_code == 201
    upload = client.post(
        f"{CONVERSATIONS}/{conversation_id}/attachments",
        headers=bearer(tokens),
        data={"file": (io.BytesIO(ATTACHMENT), "results.pdf", "application/pdf")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 201
    messages = client.get(
        f"{CONVERSATIONS}/{conversation_id}/messages?order=asc", headers=bearer(tokens)
    ).get_json()["items"]
    assert (
        client.delete(f"{CONVERSATIONS}/{conversation_id}", headers=bearer(tokens)).status_code
        == 202
    )
    officers = {
        "a": team.compliance,
        "b": make_staff(runtime, Role.COMPLIANCE),
        "c": make_staff(runtime, Role.COMPLIANCE),
    }
    a = bearer(login(client, runtime, officers["a"]))
    grant = client.post(f"/api/v1/compliance/colleagues/{officers['b'].id}/grant", headers=a)
    assert grant.status_code == 200
    auth = {name: bearer(login(client, runtime, person)) for name, person in officers.items()}
    found = search(client, auth["a"], member.email)
    return Archive(
        member,
        conversation_id,
        [m["id"] for m in messages],
        upload.get_json()["id"],
        found["items"][0]["id"],
        auth["a"],
        auth["b"],
        auth["c"],
        officers,
    )


def search(client, auth: dict[str, str], email: str, query: str = "") -> dict[str, Any]:
    response = client.post(f"{ARCHIVE}/search{query}", json={"member_email": email}, headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def ask(client, archive: Archive, auth: dict[str, str] | None = None) -> str:
    response = client.post(
        f"{ARCHIVE}/{archive.record_id}/retrievals",
        json={"justification": JUSTIFICATION},
        headers=auth or archive.a,
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["status"] == "pending"
    return response.get_json()["id"]  # type: ignore[no-any-return]


def approve(client, retrieval_id: str, auth: dict[str, str]) -> Any:
    return client.post(f"{RETRIEVALS}/{retrieval_id}/approve", headers=auth)


def content(client, retrieval_id: str, auth: dict[str, str]) -> Any:
    return client.get(f"{RETRIEVALS}/{retrieval_id}/content", headers=auth)
