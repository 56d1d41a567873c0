"""Bodies of the member API (API.md "Member")."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate, validates_schema

from medchat.schemas.auth import MemberDetailsSchema
from medchat.schemas.common import JsonBoolean, Pattern, StrictSchema, UtcDateTime, email_field
from medchat.schemas.conversations import ConversationSchema, MessageSchema
from medchat.schemas.notifications import NotificationSettingsSchema


class NotificationExportSchema(ma.Schema):
    """The member's notification consent per channel, and how many browsers may be pushed to."""

    channels = fields.Nested(NotificationSettingsSchema, required=True)
    push_subscriptions = fields.Integer(required=True)


class ProfileSchema(ma.Schema):
    id = fields.UUID(required=True)
    email = fields.String(required=True)
    first_name = fields.String(required=True)
    last_name = fields.String(required=True)
    birth_date = fields.Date(allow_none=True)
    sex = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    insurance_number = fields.String(allow_none=True)
    role = fields.String(required=True)
    mfa_enabled = fields.Boolean(required=True)
    created_at = UtcDateTime(required=True)


class ConsentStateSchema(ma.Schema):
    granted = fields.Boolean(required=True)
    version = fields.String(allow_none=True, required=True)
    granted_at = UtcDateTime(allow_none=True, required=True)
    current_version = fields.String(
        required=True,
        metadata={"description": "The version of the text the server serves now."},
    )
    outdated = fields.Boolean(
        required=True,
        metadata={
            "description": "Granted to another version than the current one: the member is "
            "asked again (GET /api/v1/consent) before a new question."
        },
    )


class ConsentTextSchema(ma.Schema):
    """``GET /api/v1/consent``: the text a member agrees to now."""

    purpose = fields.String(required=True, metadata={"enum": ["health_messaging"]})
    version = fields.String(required=True)
    text = fields.String(required=True)
    sha256 = fields.String(
        required=True, metadata={"description": "SHA-256 of the text's UTF-8 bytes, hex."}
    )


class ConsentSchema(ma.Schema):
    health_messaging = fields.Nested(ConsentStateSchema, required=True)


class ConsentGrantSchema(StrictSchema):
    """Grant only: withdrawal is ``DELETE /api/v1/me/consent``, never ``false`` here."""

    health_messaging = JsonBoolean(
        required=True,
        validate=validate.Equal(True, error="Withdraw consent with DELETE /api/v1/me/consent."),
    )
    version = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=32),
            Pattern(r"^[\x21-\x7E]+$", "Printable ASCII without spaces."),
        ],
        metadata={"description": "The version of the consent text the member agreed to."},
    )


class ProfileUpdateSchema(MemberDetailsSchema):
    """``PATCH /api/v1/me``: any of the registration details, under registration's rules.

    Every field is optional here (the schema loads as ``partial``), unknown ones are refused
    (``email`` and ``password`` have routes of their own), and an empty body is a 422: a
    rectification that changes nothing is a client mistake worth saying so.
    """

    class Meta(MemberDetailsSchema.Meta):
        #: The document says what ``_something_to_change`` checks (``medchat.api.openapi``).
        json_schema = {"minProperties": 1}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("partial", True)
        super().__init__(**kwargs)

    @validates_schema
    def _something_to_change(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data:
            raise ma.ValidationError("Give at least one field to change.", "_schema")


class AccountDeletionSchema(StrictSchema):
    """Deleting the account is confirmed with the password, as at sign-in."""

    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class ExportArgsSchema(StrictSchema):
    format = fields.String(
        load_default="json",
        validate=validate.OneOf(("json", "fhir")),
        metadata={"description": "json (default) or fhir (a FHIR R4 Bundle of type collection)"},
    )


class ConsentRecordSchema(ma.Schema):
    purpose = fields.String(required=True)
    version = fields.String(required=True)
    granted_at = UtcDateTime(required=True)
    withdrawn_at = UtcDateTime(allow_none=True, required=True)


class ExportMessageSchema(MessageSchema):
    """A message as the API shows it; in the export every key is always present."""

    author_name = fields.String(allow_none=True, required=True)


class ExportConversationSchema(ConversationSchema):
    """A conversation as the member's list shows it, with its closing time and messages;
    in the export every key is always present. The live workflow state of the moment (a
    doctor's claim, read markers) is not the member's data and stays out; ``urgent``, which
    the member chose, is in."""

    class Meta:
        exclude = ("in_review", "unread_count", "read_through", "read_by_other_through")

    subject = fields.String(allow_none=True, required=True)
    closed_at = UtcDateTime(allow_none=True, required=True)
    readable = fields.Boolean(required=True)
    history_pending = fields.Boolean(
        required=True,
        metadata={
            "description": "True while the history is re-sealed after a password reset: "
            "subject and messages are not readable yet (export again later)."
        },
    )
    messages = fields.List(fields.Nested(ExportMessageSchema), required=True)


class RestrictionStateSchema(ma.Schema):
    """Whether the member restricts processing now, on which ground, since when."""

    restricted = fields.Boolean(required=True)
    ground = fields.String(
        allow_none=True, required=True, metadata={"enum": ["member_request", "objection", None]}
    )
    since = UtcDateTime(allow_none=True, required=True)


class RestrictionRecordSchema(ma.Schema):
    """One restriction in the export: who asked, when it began and ended."""

    ground = fields.String(required=True, metadata={"enum": ["member_request", "objection"]})
    requested_by = fields.String(required=True, metadata={"enum": ["member", "dpo"]})
    restricted_at = UtcDateTime(required=True)
    lifted_at = UtcDateTime(allow_none=True, required=True)
    lifted_by = fields.String(allow_none=True, required=True)


class KeptAfterDeletionSchema(ma.Schema):
    """One kind of record an erasure leaves behind (``services/kept_after_deletion``)."""

    kept = fields.String(
        required=True,
        metadata={
            "enum": ["sealed_archive", "consent_history", "audit_trail", "account_tombstone"]
        },
    )
    what = fields.String(required=True)
    why = fields.String(required=True)
    how_long = fields.String(required=True)
    retention_days = fields.Integer(
        allow_none=True,
        required=True,
        metadata={"description": "A fixed period in days; null: as long as `how_long` says."},
    )


class ExportSchema(ma.Schema):
    """Everything held about the member that they can read (API.md ``/me/export``)."""

    exported_at = UtcDateTime(required=True)
    profile = fields.Nested(ProfileSchema, required=True)
    consents = fields.List(fields.Nested(ConsentRecordSchema), required=True)
    conversations = fields.List(fields.Nested(ExportConversationSchema), required=True)
    notifications = fields.Nested(NotificationExportSchema, required=True)
    restrictions = fields.List(
        fields.Nested(RestrictionRecordSchema),
        required=True,
        metadata={"description": "Every restriction of processing and objection, oldest first."},
    )
    kept_after_deletion = fields.List(
        fields.Nested(KeptAfterDeletionSchema),
        required=True,
        metadata={"description": "What an erasure leaves behind, why and for how long."},
    )


class AccessLogEntrySchema(ma.Schema):
    at = UtcDateTime(required=True)
    actor = fields.String(
        required=True,
        metadata={
            "description": 'A doctor\'s display name ("Dr. A."), "compliance", "system", '
            '"you" (the member\'s own restriction or objection), "data protection officer" '
            'or "operator".'
        },
    )
    action = fields.String(
        required=True,
        metadata={
            "enum": [
                "read",
                "reply",
                "close",
                "retrieval",
                "retention",
                "restrict",
                "object",
                "lift_restriction",
                "export_request",
                "rectification",
                "identified",
            ]
        },
    )
    conversation_id = fields.UUID(allow_none=True, required=True)


class AccessLogPageSchema(ma.Schema):
    items = fields.List(fields.Nested(AccessLogEntrySchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class EmailChangeSchema(StrictSchema):
    """``POST /api/v1/me/email``: the password (the step-up) and the new address, checked as
    registration checks one."""

    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    new_email = email_field()


class EmailChangeConfirmSchema(StrictSchema):
    """``POST /api/v1/me/email/confirm``: the token mailed to the new address."""

    token = fields.String(required=True, validate=validate.Length(min=1, max=128))
