"""Request and response bodies of ``/api/v1/auth`` (API.md "Authentication")."""

from __future__ import annotations

from datetime import date

import marshmallow as ma
from marshmallow import fields, validate

from medchat.schemas.common import StrictSchema

SEXES = ("female", "male", "other", "unknown")
_password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
_name = fields.String(required=True, validate=validate.Length(min=1, max=100))
#: A TOTP code or a recovery code: ASCII letters, digits, spaces and hyphens. A code in other
#: digits ("١٢٣٤٥٦" passes ``str.isdigit``) is refused here, before it counts as a failed
#: attempt anywhere.
_CODE_RULES = [
    validate.Length(min=6, max=32),
    validate.Regexp(r"^[A-Za-z0-9 -]+$", error="Only ASCII letters, digits, spaces and hyphens."),
]
_code = fields.String(validate=_CODE_RULES)


def _not_in_future(value: date) -> None:
    if value > date.today() or value.year < 1900:
        raise ma.ValidationError("Must be a real birth date (1900 or later, not in the future).")


class MemberDetailsSchema(StrictSchema):
    """What a member says about themselves: the one set of rules for registering and for
    correcting it later (``PATCH /api/v1/me``, ``medchat.schemas.member``)."""

    first_name = _name
    last_name = _name
    birth_date = fields.Date(required=True, validate=_not_in_future)
    sex = fields.String(required=True, validate=validate.OneOf(SEXES))
    phone = fields.String(
        validate=validate.Regexp(r"^\+?[0-9 ()./-]{4,30}$", error="Not a phone number.")
    )
    insurance_number = fields.String(validate=validate.Length(min=1, max=40))


class RegisterSchema(MemberDetailsSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = _password


class TokenRequestSchema(StrictSchema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = _password
    totp_code = _code


class TokenResponseSchema(ma.Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True)
    expires_in = fields.Integer(required=True)
    role = fields.String(required=True)


class RefreshSchema(StrictSchema):
    refresh_token = fields.String(required=True, validate=validate.Length(min=1, max=200))


class EnrollSchema(StrictSchema):
    enrollment_token = fields.String(required=True, validate=validate.Length(min=1, max=200))
    password = _password


class EnrollConfirmSchema(StrictSchema):
    enrollment_token = fields.String(required=True, validate=validate.Length(min=1, max=200))
    totp_code = fields.String(required=True, validate=_CODE_RULES)


class StepUpSchema(StrictSchema):
    """The account's password again, in the request that needs it (step-up)."""

    password = _password


class MfaRemoveSchema(StepUpSchema):
    """Turning a member's TOTP off: the password and a current code or a recovery code."""

    totp_code = fields.String(required=True, validate=validate.Length(min=6, max=32))


class MfaConfirmSchema(StrictSchema):
    totp_code = fields.String(required=True, validate=_CODE_RULES)


class ProvisioningSchema(ma.Schema):
    provisioning_uri = fields.String(required=True)
    qr_svg = fields.String(required=True)


class RecoveryCodesSchema(ma.Schema):
    recovery_codes = fields.List(fields.String(), required=True)


class PasswordChangeSchema(StrictSchema):
    current_password = _password
    new_password = _password


class PasswordResetRequestSchema(StrictSchema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))


class PasswordResetConfirmSchema(StrictSchema):
    reset_token = fields.String(required=True, validate=validate.Length(min=1, max=200))
    new_password = _password
    totp_code = _code
