"""Bodies of ``/api/v1/conversations`` and the message shape both audiences share.

Subject and body are content: their limits (subject up to 200 characters, body 1 to 10,000
and not blank) are checked here, before anything is sealed or stored. ``Idempotency-Key`` is
1 to 200 printable ASCII characters (API.md "Conventions").
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from medchat.schemas.attachments import AttachmentSchema
from medchat.schemas.common import (
    NON_BLANK_TEXT_PATTERN,
    JsonBoolean,
    PageArgsSchema,
    Pattern,
    StrictSchema,
    UtcDateTime,
    utc_iso,
)
from medchat.services.service_info import NOTICE_VERSION

#: A conversation's status as either audience sees it (a sealed one is in no view).
STATUSES = ("open", "answered", "closed")
SUBJECT_MAX = 200
BODY_MAX = 10_000
IDEMPOTENCY_KEY_MAX = 200


#: Something other than white space: the pattern is the check and what the document says.
_not_blank = Pattern(NON_BLANK_TEXT_PATTERN, "Must not be blank.")
_body = fields.String(required=True, validate=[validate.Length(min=1, max=BODY_MAX), _not_blank])


class ConversationCreateSchema(StrictSchema):
    subject = fields.String(
        load_default=None,
        allow_none=True,
        validate=[validate.Length(min=1, max=SUBJECT_MAX), _not_blank],
    )
    body = _body
    emergency_notice = fields.String(
        required=True,
        validate=validate.OneOf([NOTICE_VERSION]),
        metadata={
            "description": "The version of the emergency notice (GET /api/v1/service) the "
            "member was shown and acknowledged; another version or none is a 422."
        },
    )
    urgent = JsonBoolean(
        load_default=False,
        metadata={"description": "The member marks the question urgent: first in the queue."},
    )


def unavailable_field() -> fields.String:
    """Why a listed conversation shows no content (``null`` when it does)."""
    return fields.String(
        allow_none=True,
        required=True,
        metadata={
            "enum": ["history_pending", "integrity_failed", None],
            "description": "history_pending: re-sealed after a password reset, reading answers "
            "409 history_pending; integrity_failed: refused (altered in the database), reading "
            "answers 409 key_integrity_failed.",
        },
    )


class MessageCreateSchema(StrictSchema):
    body = _body


class IdempotencyHeaderSchema(ma.Schema):
    """The optional ``Idempotency-Key`` header of creating POSTs."""

    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        load_default=None,
        validate=Pattern(
            rf"^[\x20-\x7E]{{1,{IDEMPOTENCY_KEY_MAX}}}$",
            error=f"Must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters.",
        ),
        metadata={"description": "Retries with the same key and body return the first result."},
    )


class MessagePageArgsSchema(PageArgsSchema):
    order = fields.String(load_default="desc", validate=validate.OneOf(("asc", "desc")))


class MessageSchema(ma.Schema):
    """A message; a clinician author is named by display name only ("Dr. A."), never e-mail."""

    id = fields.UUID(required=True)
    author = fields.String(required=True, metadata={"enum": ["member", "clinician"]})
    author_name = fields.String(allow_none=True)
    body = fields.String(required=True)
    created_at = UtcDateTime(required=True)
    attachments = fields.List(fields.Nested(AttachmentSchema), required=True)


def message_json(message: Any) -> dict[str, Any]:
    """``MessageSchema().dump(message)``, shaped by hand for the hot paths.

    A page of 50 messages through marshmallow costs about as much CPU as reading and
    decrypting it; the schema stays the contract (it documents the response in the OpenAPI
    document) and a test holds this function to exactly its output.
    """
    return {
        "id": str(message.id),
        "author": message.author,
        "author_name": message.author_name,
        "body": message.body,
        "created_at": utc_iso(message.created_at),
        "attachments": [
            {
                "id": str(a.id),
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
            }
            for a in message.attachments
        ],
    }


class MessagePageSchema(ma.Schema):
    items = fields.List(fields.Nested(MessageSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class ConversationSchema(ma.Schema):
    """A conversation as a member lists it; the clinician's (``schemas.clinician.CaseSchema``)
    and the export's (``schemas.member.ExportConversationSchema``) extend it."""

    id = fields.UUID(required=True)
    subject = fields.String(allow_none=True)
    status = fields.String(required=True, metadata={"enum": list(STATUSES)})
    created_at = UtcDateTime(required=True)
    last_message_at = UtcDateTime(required=True)
    status_since = UtcDateTime(
        required=True,
        metadata={
            "description": "When the conversation entered its status: for an open one, since "
            "when the member has waited (their first message after the last answer; the "
            "clinicians' queue is ordered on it), else when it was answered, closed or sealed."
        },
    )
    readable = fields.Boolean(
        required=True,
        metadata={
            "description": "False while the history is re-sealed after a password reset, or "
            "when the conversation failed an integrity check (subject is null then)."
        },
    )
    unavailable = unavailable_field()
    unread_count = fields.Integer(
        dump_default=0,
        metadata={
            "description": "The other side's messages past the caller's read marker (for a "
            "member: the doctors' unread replies)."
        },
    )
    read_through = UtcDateTime(
        allow_none=True,
        dump_default=None,
        metadata={
            "description": "The caller has read every message created at or before this "
            "(null: none yet). Set by POST .../read."
        },
    )
    read_by_other_through = UtcDateTime(
        allow_none=True,
        dump_default=None,
        metadata={
            "description": "The other side has read every message created at or before this: "
            "for a member, the furthest any doctor has read (null: none yet)."
        },
    )
    urgent = fields.Boolean(dump_default=False, metadata={"description": "Marked urgent."})
    in_review = fields.Boolean(
        dump_default=False,
        metadata={
            "description": "A doctor is looking at this question (a clinician claimed it); "
            "who is never said to the member."
        },
    )


class ConversationCreatedSchema(ConversationSchema):
    messages = fields.List(fields.Nested(MessageSchema), required=True)


class ConversationPageSchema(ma.Schema):
    items = fields.List(fields.Nested(ConversationSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
