"""Bodies of the member API (API.md "Member")."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from medchat.schemas.common import StrictSchema, UtcDateTime


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


class ConsentSchema(ma.Schema):
    health_messaging = fields.Nested(ConsentStateSchema, required=True)


class ConsentGrantSchema(StrictSchema):
    """Grant only: withdrawal is ``DELETE /api/v1/me/consent``, never ``false`` here."""

    health_messaging = fields.Boolean(
        required=True,
        truthy={True},
        falsy={False},
        validate=validate.Equal(True, error="Withdraw consent with DELETE /api/v1/me/consent."),
    )
    version = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=32),
            validate.Regexp(r"^[\x21-\x7e]+$", error="Printable ASCII without spaces."),
        ],
        metadata={"description": "The version of the consent text the member agreed to."},
    )
