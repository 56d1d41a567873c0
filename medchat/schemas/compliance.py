"""Bodies of ``/api/v1/compliance`` (API.md "Compliance") and the published archive key.

Personal data stays out of URLs: the member's address travels in a POST body. Records are
metadata only (ids, times, reason, message count); content appears only in an opened
retrieval. A justification is 20 to 2,000 characters, not counting surrounding blanks.
"""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from medchat.schemas.common import (
    ActivityPageArgsSchema,
    Pattern,
    StrictSchema,
    UtcDateTime,
    email_field,
    text_spanning,
)
from medchat.schemas.conversations import MessageSchema
from medchat.services.retrieval import JUSTIFICATION_MAX, JUSTIFICATION_MIN
from medchat.services.retrieval_views import APPROVED, PENDING

#: At least ``JUSTIFICATION_MIN`` characters from the first to the last that is not white
#: space (``len(value.strip())``), said as the pattern the document shows.
_justified = Pattern(
    text_spanning(JUSTIFICATION_MIN), f"Write at least {JUSTIFICATION_MIN} characters."
)


class ArchiveSearchSchema(StrictSchema):
    member_email = email_field(max_length=320)


class ArchiveRecordSchema(ma.Schema):
    id = fields.UUID(required=True)
    seq = fields.Integer(required=True)
    conversation_id = fields.UUID(required=True)
    question_at = UtcDateTime(required=True)
    sealed_at = UtcDateTime(required=True)
    reason = fields.String(required=True, metadata={"enum": ["member_request", "retention"]})
    message_count = fields.Integer(required=True)
    content_destroyed = fields.Boolean(required=True)


class ArchiveRecordPageSchema(ma.Schema):
    items = fields.List(fields.Nested(ArchiveRecordSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class RetrievalCreateSchema(StrictSchema):
    justification = fields.String(
        required=True,
        # The length is implied by the pattern; said on its own so that no reader (or
        # generator) of the document has to work it out.
        validate=[validate.Length(min=JUSTIFICATION_MIN, max=JUSTIFICATION_MAX), _justified],
    )


class RetrievalCreatedSchema(ma.Schema):
    id = fields.UUID(required=True)
    status = fields.String(required=True)


class RetrievalSchema(RetrievalCreatedSchema):
    record_id = fields.UUID(required=True)
    conversation_id = fields.UUID(required=True)
    requested_by = fields.UUID(required=True)
    requested_at = UtcDateTime(required=True)
    approved_by = fields.UUID(allow_none=True)
    approved_at = UtcDateTime(allow_none=True)
    expires_at = UtcDateTime(allow_none=True)
    justification = fields.String(required=True)


class RetrievalListArgsSchema(ActivityPageArgsSchema):
    status = fields.String(load_default=PENDING, validate=validate.OneOf((PENDING, APPROVED)))


class RetrievalPageSchema(ma.Schema):
    items = fields.List(fields.Nested(RetrievalSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class ArchivedConversationSchema(ma.Schema):
    record_id = fields.UUID(required=True)
    conversation_id = fields.UUID(required=True)
    subject = fields.String(allow_none=True)
    created_at = UtcDateTime(required=True)
    sealed_at = UtcDateTime(required=True)
    reason = fields.String(required=True)
    expires_at = UtcDateTime(required=True)
    messages = fields.List(fields.Nested(MessageSchema), required=True)


class LedgerReportSchema(ma.Schema):
    ok = fields.Boolean(required=True)
    records = fields.Integer(required=True)
    first_bad = fields.String(allow_none=True, required=True)
    first_bad_seq = fields.Integer(allow_none=True)
    reason = fields.String(allow_none=True)
    head_seq = fields.Integer(required=True)
    head_hash = fields.String(required=True)


class PublicKeySchema(ma.Schema):
    algorithm = fields.String(required=True)
    public_key = fields.String(required=True, metadata={"description": "Ed25519, 64 hex digits"})
    fingerprint = fields.String(required=True)
