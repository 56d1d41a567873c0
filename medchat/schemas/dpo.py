"""Bodies of the data protection officer's API (``/api/v1/dpo``, docs/security.md, "The
data protection officer"): the member's address and the ticket in, no content out."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from medchat.schemas.common import Pattern, StrictSchema, email_field
from medchat.schemas.member import ProfileUpdateSchema, RestrictionStateSchema

#: A reference, not a description: no space, so no name or sentence fits in it.
TICKET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/#-]{0,63}$"


class DpoRequestSchema(StrictSchema):
    """Who the mailed request is about (their address, in the body, never in a URL) and the
    ticket it arrived under, audited with the act."""

    email = email_field()
    ticket = fields.String(
        required=True,
        validate=Pattern(TICKET_PATTERN, "A ticket reference: letters, digits, . _ / # -."),
        metadata={"description": "The request's ticket reference (no names: it is audited)."},
    )


class DpoRestrictionSchema(DpoRequestSchema):
    action = fields.String(required=True, validate=validate.OneOf(("restrict", "lift", "object")))


class DpoRectificationSchema(DpoRequestSchema):
    changes = fields.Nested(ProfileUpdateSchema, required=True)


class DpoDoneSchema(ma.Schema):
    status = fields.String(required=True, metadata={"enum": ["notified", "deleted"]})
    ticket = fields.String(required=True)


class DpoRestrictionDoneSchema(ma.Schema):
    ticket = fields.String(required=True)
    restriction = fields.Nested(RestrictionStateSchema, required=True)


class DpoRectificationDoneSchema(ma.Schema):
    ticket = fields.String(required=True)
    fields_changed = fields.List(
        fields.String(),
        required=True,
        data_key="fields",
        metadata={"description": "The names of the fields that changed, never their values."},
    )
