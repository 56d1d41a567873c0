"""Bodies of ``/api/v1/admin`` (API.md "Admin")."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from medchat.schemas.common import StrictSchema, UtcDateTime, email_field

STAFF_ROLES = ("clinician", "compliance", "admin", "dpo")


class StaffCreateSchema(StrictSchema):
    email = email_field()
    role = fields.String(required=True, validate=validate.OneOf(STAFF_ROLES))
    first_name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    last_name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    display_name = fields.String(validate=validate.Length(min=1, max=100))


class StaffCreatedSchema(ma.Schema):
    id = fields.UUID(required=True)
    enrollment_token = fields.String(required=True)


class StaffResetSchema(ma.Schema):
    enrollment_token = fields.String(required=True)


class AuditEntrySchema(ma.Schema):
    seq = fields.Integer()
    id = fields.UUID()
    at = UtcDateTime()
    actor_id = fields.UUID(allow_none=True)
    actor_role = fields.String(allow_none=True)
    action = fields.String()
    outcome = fields.String()
    target_type = fields.String(allow_none=True)
    target_id = fields.String(allow_none=True)
    #: The client's network address while it is kept (``MEDCHAT_AUDIT_ADDRESS_DAYS``); null
    #: when there was none (CLI, jobs) or once erased (``address_erased``).
    address = fields.String(allow_none=True)
    address_erased = fields.Boolean()
    details = fields.Raw()
    #: An entry about a member (their medical use, their account) names them only by this
    #: pseudonym, new each UTC day; its member id, address, target and details are withheld
    #: and a medical action is shown by class (docs/security.md "Who sees members in the
    #: audit"). Null for staff and admin events, shown in full.
    member = fields.String(allow_none=True)


class AuditPageSchema(ma.Schema):
    items = fields.List(fields.Nested(AuditEntrySchema))
    next_cursor = fields.String(allow_none=True)
