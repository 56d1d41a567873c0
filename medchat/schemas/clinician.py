"""Bodies of ``/api/v1/clinician``: the patient object has exactly four fields.

These schemas are the second wall behind ``medchat.services.patient_view``: they have no field for a
last name, e-mail, phone, insurance number or member id, so none can be serialised to a
clinician even by mistake.
"""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from medchat.schemas.common import ActivityPageArgsSchema, StrictSchema, UtcDateTime
from medchat.schemas.conversations import STATUSES, ConversationSchema
from medchat.services.claims import HANDOFF_REASONS
from medchat.services.clinician_conversations import CLAIM_FILTERS


class QueueArgsSchema(ActivityPageArgsSchema):
    status = fields.String(load_default="open", validate=validate.OneOf(STATUSES))
    claim = fields.String(
        load_default="all",
        validate=validate.OneOf(CLAIM_FILTERS),
        metadata={
            "description": "all; unclaimed (nobody holds a live claim); claimed (somebody "
            "does); mine (the caller does)."
        },
    )


class ClaimSchema(ma.Schema):
    """Who holds a question until when (staff only: members see ``in_review``)."""

    state = fields.String(required=True, metadata={"enum": ["mine", "other"]})
    clinician_name = fields.String(allow_none=True, required=True)
    claimed_at = UtcDateTime(required=True)
    expires_at = UtcDateTime(
        required=True, metadata={"description": "Back in the queue after this (unless renewed)."}
    )
    handed_by_name = fields.String(allow_none=True, required=True)
    reason = fields.String(
        allow_none=True, required=True, metadata={"enum": [*HANDOFF_REASONS, None]}
    )


class HandoffSchema(StrictSchema):
    to = fields.UUID(required=True, metadata={"description": "An active clinician's account id."})
    reason = fields.String(
        required=True,
        validate=validate.OneOf(HANDOFF_REASONS),
        metadata={"description": "A code, never free text: a note could hold health data."},
    )


class PatientSchema(ma.Schema):
    pseudonym = fields.String(required=True, metadata={"description": "per conversation"})
    first_name = fields.String(required=True)
    birth_date = fields.Date(allow_none=True)
    sex = fields.String(allow_none=True)


class CaseSchema(ConversationSchema):
    """A conversation as a clinician sees it: the member's, plus the patient object."""

    patient = fields.Nested(PatientSchema, required=True)
    # A clinician's view has no re-seal pending: only a refusal makes it unreadable.
    readable = fields.Boolean(
        required=True,
        metadata={"description": "False when the conversation failed an integrity check."},
    )
    claim = fields.Nested(
        ClaimSchema, allow_none=True, required=True, metadata={"description": "The live claim."}
    )
    overdue = fields.Boolean(
        required=True,
        metadata={
            "description": "Open and waiting longer than the expected response time "
            "(GET /api/v1/service)."
        },
    )


class CasePageSchema(ma.Schema):
    items = fields.List(fields.Nested(CaseSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class ClosedSchema(ma.Schema):
    status = fields.String(required=True)
