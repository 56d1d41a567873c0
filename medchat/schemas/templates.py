"""A clinician's canned reply: a title (1 to 100 characters) and a body (as an answer's)."""

from __future__ import annotations

from marshmallow import fields, validate

from medchat.schemas.common import NON_BLANK_TEXT_PATTERN, Pattern, StrictSchema, UtcDateTime
from medchat.schemas.conversations import BODY_MAX

TITLE_MAX = 100
_not_blank = Pattern(NON_BLANK_TEXT_PATTERN, "Must not be blank.")


class TemplateWriteSchema(StrictSchema):
    title = fields.String(
        required=True, validate=[validate.Length(min=1, max=TITLE_MAX), _not_blank]
    )
    body = fields.String(required=True, validate=[validate.Length(min=1, max=BODY_MAX), _not_blank])


class TemplateSchema(StrictSchema):
    id = fields.UUID(required=True)
    title = fields.String(required=True)
    body = fields.String(required=True)
    updated_at = UtcDateTime(required=True)


class TemplateListSchema(StrictSchema):
    items = fields.List(fields.Nested(TemplateSchema), required=True)
