"""Bodies of ``/api/v1/clinician``: the patient object has exactly four fields.

These schemas are the second wall behind ``medchat.services.patient_view``: they have no field for a
last name, e-mail, phone, insurance number or member id, so none can be serialised to a
clinician even by mistake.
"""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from medchat.schemas.common import ActivityPageArgsSchema
from medchat.schemas.conversations import STATUSES, ConversationSchema


class QueueArgsSchema(ActivityPageArgsSchema):
    status = fields.String(load_default="open", validate=validate.OneOf(STATUSES))


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


class CasePageSchema(ma.Schema):
    items = fields.List(fields.Nested(CaseSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class ClosedSchema(ma.Schema):
    status = fields.String(required=True)
