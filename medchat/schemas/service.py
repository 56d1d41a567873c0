"""Body of ``GET /api/v1/service``: hours, expected response time, the emergency notice."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from access_control.service_hours import WEEKDAYS


class PeriodSchema(ma.Schema):
    days = fields.List(
        fields.String(metadata={"enum": list(WEEKDAYS)}), required=True, metadata={"minItems": 1}
    )
    opens = fields.String(required=True, metadata={"pattern": "^[0-2][0-9]:[0-5][0-9]$"})
    closes = fields.String(required=True, metadata={"pattern": "^[0-2][0-9]:[0-5][0-9]$"})


class NoticeSchema(ma.Schema):
    version = fields.String(
        required=True,
        metadata={"description": "Send it as ``emergency_notice`` when asking a question."},
    )
    text = fields.String(required=True)


class ServiceSchema(ma.Schema):
    hours = fields.List(
        fields.Nested(PeriodSchema),
        required=True,
        metadata={"description": "When doctors answer, in ``timezone``."},
    )
    timezone = fields.String(required=True, metadata={"description": "An IANA time zone."})
    open_now = fields.Boolean(required=True)
    expected_response_hours = fields.Integer(
        required=True,
        metadata={"description": "Questions are answered within this many hours of waiting."},
    )
    emergency_notice = fields.Nested(NoticeSchema, required=True)
