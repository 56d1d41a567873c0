"""The database a thief carries away, filled with canaries, and every secret that went into it.

The stolen-database tests (``tests/security/test_stolen_database.py``: the stored bytes hold
nothing readable; ``tests/security/test_stolen_database_server_keys.py``: no key the server
holds at rest opens anything) need a database filled the way the service fills it (a member
with personal data, a conversation with a subject, messages, an attachment and a clinician's
reply) while the test keeps every secret that exists in its memory: the DEK, the role and
personal private keys, the password-derived keys, the tokens and the keys derived from them.
``fill_database`` does it through the services and returns what the test knows (``Stolen``;
the thief knows none of it); ``fill_over_http`` stores the same canaries through the HTTP API,
where this build has it (``require_conversation_api`` skips the test where it has not).
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass, field
from datetime import date

import pytest
from sqlalchemy import select

from access_control.keyring import _session_key
from access_control.password_kdf import _SEAL_INFO, _derive, password_blob_params, stretch_for_blob
from access_control.passwords import _bcrypt_input
from access_control.roles import Role
from medchat.models import PersonalKey
from medchat.services.context import ServiceContext
from tests.support.accounts import Person, bearer, init_role_keys, login, make_member, make_staff
from tests.support.conversations import add_attachment, read_bodies, reply, start_conversation
from tests.support.messaging import claim
from tests.support.sample_files import pdf
from tests.support.sessions import SignedIn, sign_in

PERSONAL_DATA = {
    "member email": "zephyrine.qv9canary@example.org",
    "member first name": "Zephyrinecanaryqv",
    # A clinician's slice of the member (first name, birth date, sex) is sealed too (0021):
    # the date in every form it could be stored in, the sex as the one value this member has.
    "member birth date": "1931-07-29",
    "member birth date, compact": "19310729",
    "member birth date, French": "29/07/1931",
    "member sex": "female",
    "member last name": "Quillenbrookcanary",
    "member phone": "+33 6 71 42 93 05",
    "member insurance number": "INS-QV9-CANARY-55013",
}
BIRTH_DATE = date(1931, 7, 29)
SUBJECT = "Canary subject QV9: brûlure d'estomac après les repas"
BODIES = [
    "Canary body QV9-1: douleur thoracique depuis mardi",
    "Canary body QV9-2: traitement par oméprazole 20 mg",
    "Canary body QV9-3: antécédents familiaux d'ulcère",
]
REPLY = "Canary reply QV9: prenez rendez-vous pour une fibroscopie"
ATTACHMENT_NAME = "canary-bilan-sanguin-QV9.pdf"
ATTACHMENT_MARK = "CANARY-ATTACHMENT-BYTES-QV9 résultats hépatiques"
ATTACHMENT_DATA = b"%PDF-1.7\n" + ATTACHMENT_MARK.encode() + b"\n%%EOF\n"
#: What the API takes: a PDF it can read and clean, the mark in clear in its page's stream.
ATTACHMENT_UPLOAD = pdf(ATTACHMENT_MARK, encoding="utf-8")

CONVERSATIONS = "/api/v1/conversations"


@dataclass(repr=False)
class Stolen:
    """What the test knows after filling the database (the thief knows none of it)."""

    people: dict[str, Person]
    sessions: dict[str, SignedIn]
    dek: bytes
    secrets: dict[str, bytes | str] = field(default_factory=dict)

    def password_of(self, account_id: uuid.UUID) -> str:
        return next(p.password for p in self.people.values() if p.id == account_id)


def server_keys(runtime: ServiceContext) -> dict[str, bytes]:
    """Every key the server holds at rest (``test_the_key_directory_holds_...`` proves it)."""
    keys = runtime.keys
    return {
        "profile": keys.profile,
        "blind-index": keys.blind_index,
        "audit-mac": keys.audit_mac,
        "session-signing": keys.session_signing,
        "integrity": keys.integrity,
        "archive-signing": keys.archive_signing,
        "session-keyring": keys.session_keyring,
        "archive-gate": keys.archive_gate,
        "audit-anchor": keys.audit_anchor,
        "vapid": keys.vapid,
        "notify-webhook": keys.notify_webhook,
    }


def fill_database(runtime: ServiceContext) -> Stolen:
    """The canaries stored through the services, read back, and every secret kept."""
    clinician = make_staff(runtime, Role.CLINICIAN)
    compliance = make_staff(runtime, Role.COMPLIANCE)
    init_role_keys(runtime, clinician, compliance)
    member = make_member(
        runtime,
        email=PERSONAL_DATA["member email"],
        first_name=PERSONAL_DATA["member first name"],
        birth_date=BIRTH_DATE,
        sex=PERSONAL_DATA["member sex"],
        last_name=PERSONAL_DATA["member last name"],
        phone=PERSONAL_DATA["member phone"],
        insurance_number=PERSONAL_DATA["member insurance number"],
    )
    people = {"member": member, "clinician": clinician, "compliance": compliance}
    sessions = {name: sign_in(runtime, person) for name, person in people.items()}

    started = start_conversation(
        runtime, sessions["member"].principal, subject=SUBJECT, bodies=BODIES
    )
    add_attachment(
        runtime,
        started.id,
        started.message_ids[-1],
        started.dek,
        filename=ATTACHMENT_NAME,
        content_type="application/pdf",
        data=ATTACHMENT_DATA,
    )
    reply(runtime, sessions["clinician"].principal, started.id, REPLY)
    # The honest path: member and clinician read everything back.
    for name in ("member", "clinician"):
        assert read_bodies(runtime, sessions[name].principal, started.id) == [*BODIES, REPLY]

    stolen = Stolen(people, sessions, started.dek)
    stolen.secrets["conversation DEK"] = started.dek
    for name, signed in sessions.items():
        keyring = signed.principal.keyring
        assert keyring.personal is not None
        stolen.secrets[f"{name} personal private seed"] = (
            keyring.personal.private_bytes_for_storage()
        )
        for held in keyring.roles:
            stolen.secrets[f"{held.role} role private seed ({name})"] = (
                held.key.private_bytes_for_storage()
            )
        for kind, token in (
            ("access", signed.tokens.access_token),
            ("refresh", signed.tokens.refresh_token),
        ):
            stolen.secrets[f"{name} {kind} token"] = token
            stolen.secrets[f"{name} {kind} session key"] = _session_key(
                token, runtime.keys.session_keyring
            )
            # What the token alone derived before keyrings needed the server key.
            stolen.secrets[f"{name} {kind} token-only key"] = _session_key(token, bytes(32))
        stolen.secrets[f"{name} password"] = people[name].password
        stolen.secrets[f"{name} TOTP secret"] = people[name].totp_secret or ""
    with runtime.database.transaction() as session:
        for row in session.scalars(select(PersonalKey)):
            blob = row.private_key_ciphertext
            salt = blob[4:20]
            stolen.secrets[f"password-derived key of {row.account_id}"] = _derive(
                stolen.password_of(row.account_id), salt, password_blob_params(blob)
            )
            # What the scrypt run makes: the key sealing the blob, the password hash's input.
            run = stretch_for_blob(blob, stolen.password_of(row.account_id))
            stolen.secrets[f"password seal key of {row.account_id}"] = run.key(_SEAL_INFO)
            stolen.secrets[f"bcrypt input of {row.account_id}"] = _bcrypt_input(run)
    for name, key in server_keys(runtime).items():
        stolen.secrets[f"server key {name}"] = key
    assert {
        "physician role private seed (clinician)",
        "archive role private seed (compliance)",
    } <= set(stolen.secrets)
    stolen.secrets = {name: value for name, value in stolen.secrets.items() if value}
    return stolen


def require_conversation_api(app) -> None:
    """Skip the test where this build has no conversation API."""
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    needed = {
        CONVERSATIONS,
        "/api/v1/conversations/<uuid:conversation_id>/attachments",
        "/api/v1/clinician/conversations/<uuid:conversation_id>/messages",
    }
    if not needed <= rules:
        pytest.skip("the conversation API is not part of this build")


def fill_over_http(client, runtime) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Member and clinician talk through the API, with Idempotency-Keys; returns the
    member's and the clinician's headers and the request that started the conversation."""
    clinician = make_staff(runtime, Role.CLINICIAN)
    init_role_keys(runtime, clinician, make_staff(runtime, Role.COMPLIANCE))
    member = make_member(
        runtime,
        email=PERSONAL_DATA["member email"],
        first_name=PERSONAL_DATA["member first name"],
        birth_date=BIRTH_DATE,
        sex=PERSONAL_DATA["member sex"],
        last_name=PERSONAL_DATA["member last name"],
        phone=PERSONAL_DATA["member phone"],
        insurance_number=PERSONAL_DATA["member insurance number"],
    )
    member_headers = bearer(login(client, runtime, member))
    clinician_headers = bearer(login(client, runtime, clinician))
    consent = {"health_messaging": True, "version": "2026-01"}
    assert client.put("/api/v1/me/consent", json=consent, headers=member_headers).status_code == 200
    first = {"subject": SUBJECT, "body": BODIES[0], "emergency_notice": "2026-12"}
    created = client.post(
        CONVERSATIONS, json=first, headers={**member_headers, "Idempotency-Key": "start-1"}
    )
    assert created.status_code == 201, created.get_json()
    conversation = created.get_json()["id"]
    for n, body in enumerate(BODIES[1:], 2):
        sent = client.post(
            f"{CONVERSATIONS}/{conversation}/messages",
            json={"body": body},
            headers={**member_headers, "Idempotency-Key": f"send-{n}"},
        )
        assert sent.status_code == 201, sent.get_json()
    uploaded = client.post(
        f"{CONVERSATIONS}/{conversation}/attachments",
        data={"file": (io.BytesIO(ATTACHMENT_UPLOAD), ATTACHMENT_NAME, "application/pdf")},
        headers=member_headers,
        content_type="multipart/form-data",
    )
    assert uploaded.status_code == 201, uploaded.get_json()
    claim(client, clinician_headers, conversation)
    replied = client.post(
        f"/api/v1/clinician/conversations/{conversation}/messages",
        json={"body": REPLY},
        headers=clinician_headers,
    )
    assert replied.status_code == 201, replied.get_json()
    page = client.get(f"{CONVERSATIONS}/{conversation}/messages?order=asc", headers=member_headers)
    assert [m["body"] for m in page.get_json()["items"] if m["body"]] == [*BODIES, REPLY]
    return member_headers, clinician_headers, first
