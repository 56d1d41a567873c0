"""Helpers for conversation tests: a care team holding the role keys, consent, questions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from access_control.roles import Role
from medchat.services.context import ServiceContext
from tests.support.accounts import Person, bearer, init_role_keys, make_staff

CONSENT_VERSION = "2026-01"
#: The emergency notice a question acknowledges (``medchat.services.service_info``).
NOTICE_VERSION = "2026-12"
CONVERSATIONS = "/api/v1/conversations"
CONSENT = "/api/v1/me/consent"


@dataclass(frozen=True)
class CareTeam:
    """The first clinician and compliance officer, holding the role keys after ``keys init``."""

    clinician: Person
    compliance: Person


def care_team(runtime: ServiceContext) -> CareTeam:
    """Create both first holders and run ``keys init`` (the clinician shows as "Dr. M.")."""
    clinician = make_staff(runtime, Role.CLINICIAN, first_name="Alice", last_name="Martin")
    compliance = make_staff(runtime, Role.COMPLIANCE)
    init_role_keys(runtime, clinician, compliance)
    return CareTeam(clinician, compliance)


def consent_texts(folder: Path, *versions: str) -> str:
    """A folder of consent texts (``MEDCHAT_CONSENT_TEXT_DIR``) holding ``versions``."""
    texts = folder / "health_messaging"
    texts.mkdir(parents=True, exist_ok=True)
    for version in versions:
        (texts / f"{version}.txt").write_text(f"Consent text, version {version}.\n")
    return str(folder)


def give_consent(client: Any, tokens: dict[str, Any], version: str = CONSENT_VERSION) -> None:
    response = client.put(
        CONSENT, json={"health_messaging": True, "version": version}, headers=bearer(tokens)
    )
    assert response.status_code == 200, response.get_json()


def ask(
    client: Any,
    tokens: dict[str, Any],
    body: str = "I have had a headache for three days.",
    *,
    subject: str | None = None,
    key: str | None = None,
) -> Any:
    """POST a new question; returns the response (assert on it in the test)."""
    payload: dict[str, Any] = {"body": body, "emergency_notice": NOTICE_VERSION}
    if subject is not None:
        payload["subject"] = subject
    headers = bearer(tokens)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(CONVERSATIONS, json=payload, headers=headers)


def asked(client: Any, tokens: dict[str, Any], body: str = "Question?", **kwargs: Any) -> str:
    """Ask and return the new conversation's id (the question must succeed)."""
    response = ask(client, tokens, body, **kwargs)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]  # type: ignore[no-any-return]


def send(client: Any, tokens: dict[str, Any], path: str, body: str, key: str | None = None) -> Any:
    headers = bearer(tokens)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(path, json={"body": body}, headers=headers)


def count(runtime: ServiceContext, model: Any) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(select(func.count()).select_from(model))  # type: ignore[no-any-return]


def claim(client: Any, tokens: dict[str, Any], conversation_id: Any) -> dict[str, Any]:
    """A clinician claims a question (answering needs it: ``medchat.services.claims``).
    ``tokens``: a sign-in's tokens, or the headers made of them."""
    headers = tokens if "Authorization" in tokens else bearer(tokens)
    response = client.post(
        f"/api/v1/clinician/conversations/{conversation_id}/claim", headers=headers
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]
