"""Bodies of the member API (API.md "Member")."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from medchat.schemas.common import UtcDateTime


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
