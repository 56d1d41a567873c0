"""The member's export as a FHIR R4 (4.0.1) Bundle: one Patient, one Communication a message.

HL7 FHIR R4, https://hl7.org/fhir/R4/ : ``Bundle`` of type ``collection`` (a set of resources
handed over together, with no server to resolve references against), so every entry has a
``urn:uuid:`` ``fullUrl`` and references point at those. Built by hand as plain JSON-ready
dicts from ``medchat.services.export.MemberExport``: the app needs no FHIR library at run time,
and the tests validate the output against the R4 models of ``fhir.resources``.

- ``Patient``: name (family, given), ``birthDate``, ``gender`` (our ``sex`` codes are FHIR's
  administrative-gender codes), telecom phone and e-mail, and the insurance number as an
  identifier typed ``MB`` (member number, HL7 v2 table 0203).
- ``Communication`` per message: ``status`` completed, ``sent``, ``subject`` the Patient,
  ``sender``/``recipient`` the Patient on one side and the clinician, by display name only, on
  the other; the body as ``payload.contentString`` and each attachment as
  ``payload.contentAttachment`` metadata (title, contentType, size; never the bytes). The
  conversation's subject is the ``topic``; ``inResponseTo`` links each message to the one
  before it, so the thread survives.
- ``Consent`` per consent decision (the history, oldest first): ``status`` active, or inactive
  once withdrawn or replaced; scope ``patient-privacy``, category LOINC 59284-0 "Patient
  Consent"; the text version as ``policyRule`` (system ``CONSENT_TEXT_SYSTEM``, code
  ``<purpose>/<version>``); ``provision`` permit over the period it applied.
- ``Consent`` per restriction of processing or objection (``medchat.services.restrictions``):
  the member's refusal, so ``provision`` ``deny`` over the period it applied, ``policyRule``
  coded ``restriction/<ground>`` (``member_request`` or ``objection``) in the same system.
- What an erasure would leave behind (``medchat.services.kept_after_deletion``): the complex
  extension ``RETENTION_EXTENSION`` on the Patient, one per kind of record, with the
  sub-extensions ``kept`` (code), ``what``, ``why``, ``howLong`` (strings) and, for a fixed
  period, ``period`` (a ``Duration`` in days, UCUM ``d``). Bundle itself carries no extension
  (it is not a DomainResource), and the Patient is the one the statement is about.
- A conversation whose history is not readable yet (after a password reset), or that failed
  an integrity check (``medchat.services.conversation_refusals``), becomes one Communication
  with status ``unknown`` and a ``statusReason``: listed, not dropped.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from medchat.clock import iso_z
from medchat.services.conversation_views import MessageView
from medchat.services.export import ExportedConversation, MemberExport
from medchat.services.kept_after_deletion import KeptItem

FHIR_VERSION = "4.0.1"
MEDIA_TYPE = "application/fhir+json"
#: HL7 v2 table 0203 identifier types: "MB", member number (of an insurance plan).
_IDENTIFIER_TYPES = "http://terminology.hl7.org/CodeSystem/v2-0203"
#: Who a member's question goes to: the care team, not one named person.
CARE_TEAM = "medchat care team"
PENDING_REASON = (
    "This conversation's history is being restored after a password reset and cannot be "
    "read yet; export again later."
)
#: The code system of medchat's consent texts: code ``<purpose>/<version>``.
CONSENT_TEXT_SYSTEM = "urn:medchat:consent-text"
#: The complex extension stating what an erasure keeps (docs/data-rights.md, "FHIR").
RETENTION_EXTENSION = "urn:medchat:fhir:StructureDefinition:retention-after-deletion"
_CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
_LOINC = "http://loinc.org"
REFUSED_REASON = (
    "This conversation failed an integrity check and cannot be opened; the refusal was recorded "
    "for the service's operator."
)


def _urn(value: uuid.UUID) -> str:
    return f"urn:uuid:{value}"


def _date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _without_empty(resource: dict[str, Any]) -> dict[str, Any]:
    """FHIR forbids empty values: drop ``None``, empty lists and empty objects."""
    return {key: value for key, value in resource.items() if value not in (None, [], {}, "")}


def retention_extension(item: KeptItem) -> dict[str, Any]:
    """One kind of record an erasure keeps, as the complex extension ``RETENTION_EXTENSION``."""
    parts: list[dict[str, Any]] = [
        {"url": "kept", "valueCode": item.kept},
        {"url": "what", "valueString": item.what},
        {"url": "why", "valueString": item.why},
        {"url": "howLong", "valueString": item.how_long},
    ]
    if item.retention_days is not None:
        duration = {
            "value": item.retention_days,
            "unit": "d",
            "system": "http://unitsofmeasure.org",
            "code": "d",
        }
        parts.append({"url": "period", "valueDuration": duration})
    return {"url": RETENTION_EXTENSION, "extension": parts}


def consent(
    record: dict[str, Any], member_id: uuid.UUID, patient_ref: dict[str, str]
) -> dict[str, Any]:
    """One consent decision as a FHIR Consent: active while it applies, inactive after. Its id
    is derived from the member and the grant, so every export names it alike."""
    withdrawn = record["withdrawn_at"]
    name = f"{record['purpose']}/{record['version']}/{iso_z(record['granted_at'])}"
    period = {"start": iso_z(record["granted_at"])}
    if withdrawn is not None:
        period["end"] = iso_z(withdrawn)
    return {
        "resourceType": "Consent",
        "id": str(uuid.uuid5(member_id, name)),
        "status": "active" if withdrawn is None else "inactive",
        "scope": {"coding": [{"system": _CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": _LOINC, "code": "59284-0"}]}],
        "patient": patient_ref,
        "dateTime": iso_z(record["granted_at"]),
        "policyRule": {
            "coding": [
                {
                    "system": CONSENT_TEXT_SYSTEM,
                    "code": f"{record['purpose']}/{record['version']}",
                }
            ],
            "text": f"medchat consent to {record['purpose']}, text version {record['version']}",
        },
        "provision": {"type": "permit", "period": period},
    }


def restriction(
    record: dict[str, Any], member_id: uuid.UUID, patient_ref: dict[str, str]
) -> dict[str, Any]:
    """One restriction of processing (or objection) as a FHIR Consent that denies."""
    lifted = record["lifted_at"]
    period = {"start": iso_z(record["restricted_at"])}
    if lifted is not None:
        period["end"] = iso_z(lifted)
    code = f"restriction/{record['ground']}"
    return {
        "resourceType": "Consent",
        "id": str(uuid.uuid5(member_id, f"{code}/{period['start']}")),
        "status": "active" if lifted is None else "inactive",
        "scope": {"coding": [{"system": _CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": _LOINC, "code": "59284-0"}]}],
        "patient": patient_ref,
        "dateTime": period["start"],
        "policyRule": {
            "coding": [{"system": CONSENT_TEXT_SYSTEM, "code": code}],
            "text": "Restriction of processing"
            + (" after an objection" if record["ground"] == "objection" else ""),
        },
        "provision": {"type": "deny", "period": period},
    }


def patient(profile: dict[str, Any], kept: tuple[KeptItem, ...] = ()) -> dict[str, Any]:
    """The member as a FHIR Patient (their own full data: the export is theirs), with what an
    erasure would keep of them."""
    telecom = []
    if profile.get("phone"):
        telecom.append({"system": "phone", "value": profile["phone"]})
    if profile.get("email"):
        telecom.append({"system": "email", "value": profile["email"]})
    identifier = []
    if profile.get("insurance_number"):
        identifier.append(
            {
                "use": "official",
                "type": {
                    "coding": [
                        {"system": _IDENTIFIER_TYPES, "code": "MB", "display": "Member Number"}
                    ]
                },
                "value": profile["insurance_number"],
            }
        )
    name = _without_empty(
        {
            "use": "official",
            "family": profile.get("last_name"),
            "given": [profile["first_name"]] if profile.get("first_name") else [],
        }
    )
    return _without_empty(
        {
            "resourceType": "Patient",
            "id": str(profile["id"]),
            "extension": [retention_extension(item) for item in kept],
            "identifier": identifier,
            "name": [name] if len(name) > 1 else [],
            "telecom": telecom,
            # female, male, other, unknown: the same codes as FHIR's administrative gender.
            "gender": profile.get("sex"),
            "birthDate": _date(profile.get("birth_date")),
        }
    )


def _participants(
    message: MessageView, patient_ref: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    clinician = {"display": message.author_name or "clinician"}
    if message.author == "clinician":
        return clinician, patient_ref
    return patient_ref, {"display": CARE_TEAM}


def communication(
    message: MessageView,
    conversation: ExportedConversation,
    patient_ref: dict[str, str],
    previous: MessageView | None,
) -> dict[str, Any]:
    """One message as a FHIR Communication."""
    sender, recipient = _participants(message, patient_ref)
    # An upload is a message of its own with an empty body: FHIR strings may not be empty.
    payload: list[dict[str, Any]] = [{"contentString": message.body}] if message.body else []
    payload += [
        {
            "contentAttachment": {
                "id": str(item.id),
                "title": item.filename,
                "contentType": item.content_type,
                "size": item.size,
            }
        }
        for item in message.attachments
    ]
    subject = conversation.view.subject
    return _without_empty(
        {
            "resourceType": "Communication",
            "id": str(message.id),
            "status": "completed",
            "inResponseTo": [{"reference": _urn(previous.id)}] if previous else [],
            "topic": {"text": subject} if subject else None,
            "subject": patient_ref,
            "sent": iso_z(message.created_at),
            "recipient": [recipient],
            "sender": sender,
            "payload": payload,
        }
    )


def pending_communication(
    conversation: ExportedConversation, patient_ref: dict[str, str]
) -> dict[str, Any]:
    """A conversation that cannot be decrypted (yet): named, with the reason, no content."""
    reason = PENDING_REASON if conversation.history_pending else REFUSED_REASON
    return {
        "resourceType": "Communication",
        "id": str(conversation.view.id),
        "status": "unknown",
        "statusReason": {"text": reason},
        "subject": patient_ref,
    }


def bundle(export: MemberExport) -> dict[str, Any]:
    """The whole export as a FHIR R4 ``collection`` Bundle (JSON-ready dicts)."""
    person = patient(export.profile, export.kept_after_deletion)
    patient_ref = {"reference": _urn(export.profile["id"])}
    entries = [{"fullUrl": patient_ref["reference"], "resource": person}]
    for record in export.consents:
        resource = consent(record, export.profile["id"], patient_ref)
        entries.append({"fullUrl": _urn(uuid.UUID(resource["id"])), "resource": resource})
    for record in export.restrictions:
        resource = restriction(record, export.profile["id"], patient_ref)
        entries.append({"fullUrl": _urn(uuid.UUID(resource["id"])), "resource": resource})
    for conversation in export.conversations:
        if not conversation.view.readable:
            resource = pending_communication(conversation, patient_ref)
            entries.append({"fullUrl": _urn(conversation.view.id), "resource": resource})
            continue
        previous = None
        for message in conversation.view.messages:
            resource = communication(message, conversation, patient_ref, previous)
            entries.append({"fullUrl": _urn(message.id), "resource": resource})
            previous = message
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": iso_z(export.exported_at)},
        "type": "collection",
        "timestamp": iso_z(export.exported_at),
        "entry": entries,
    }
