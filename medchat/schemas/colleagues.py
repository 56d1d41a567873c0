"""Bodies of the role-key grant routes (``/clinician/colleagues``, ``/compliance/colleagues``).

A grant shows the newcomer's key fingerprint (SECURITY-MODEL key hierarchy 10): the granter
reads it (``GET …/key``) and compares it with the newcomer, may send back what they compared
(``fingerprint``: a different key is refused, nothing sealed), and gets it in the answer.
"""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from medchat.schemas.common import StrictSchema

_FINGERPRINT = (
    "The colleague's personal key fingerprint: the first 32 hex digits of its SHA-256 "
    "fingerprint in groups of four, as shown to the colleague on their account page."
)


class GrantRequestSchema(StrictSchema):
    fingerprint = fields.String(
        validate=validate.Length(min=32, max=200),
        metadata={
            "description": "Optional: the fingerprint the granter compared with the colleague. "
            "A grant to any other key is refused (409 conflict); spaces and case do not matter."
        },
    )


class ColleagueKeySchema(ma.Schema):
    account_id = fields.UUID(required=True)
    fingerprint = fields.String(required=True, metadata={"description": _FINGERPRINT})


class GrantedSchema(ColleagueKeySchema):
    role = fields.String(required=True, metadata={"description": "physician or archive"})
    role_key_versions = fields.List(
        fields.Integer(), required=True, metadata={"description": "versions sealed to the key"}
    )
