"""Request and response bodies of ``/api/v1/auth`` (API.md "Authentication")."""

from __future__ import annotations

from datetime import date

import marshmallow as ma
from marshmallow import fields, validate

from access_control.passwords import MIN_LENGTH, MIN_SCORE
from medchat.schemas.common import FullDate, Pattern, StrictSchema, email_field

SEXES = ("female", "male", "other", "unknown")
_password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
#: A password being set: the strength rule is checked by ``access_control.passwords`` (422
#: ``weak_password`` with zxcvbn's feedback); the document states the part JSON Schema can.
_new_password = fields.String(
    required=True,
    validate=validate.Length(min=1, max=1024),
    metadata={
        "minLength": MIN_LENGTH,
        "description": f"At least {MIN_LENGTH} characters and hard to guess: a zxcvbn score of "
        f"{MIN_SCORE} or more, the person's own name, e-mail and birth date counted as "
        "guessed. A weaker one is refused: 422 `weak_password`.",
    },
)
_name = fields.String(required=True, validate=validate.Length(min=1, max=100))
#: A TOTP code or a recovery code: ASCII letters, digits, spaces and hyphens. A code in other
#: digits ("١٢٣٤٥٦" passes ``str.isdigit``) is refused here, before it counts as a failed
#: attempt anywhere.
_CODE_RULES = [
    validate.Length(min=6, max=32),
    Pattern(r"^[A-Za-z0-9 -]+$", "Only ASCII letters, digits, spaces and hyphens."),
]
_code = fields.String(validate=_CODE_RULES)


_REAL_BIRTH_DATE = "Must be a real birth date (1900 or later, not in the future)."


def _not_in_future(value: date) -> None:
    if value > date.today() or value.year < 1900:
        raise ma.ValidationError(_REAL_BIRTH_DATE)


class MemberDetailsSchema(StrictSchema):
    """What a member says about themselves: the one set of rules for registering and for
    correcting it later (``PATCH /api/v1/me``, ``medchat.schemas.member``)."""

    first_name = _name
    last_name = _name
    birth_date = FullDate(
        required=True,
        validate=_not_in_future,
        # The year's lower bound as a pattern; "not after today" is in the description only.
        metadata={
            "pattern": r"^(19|[2-9][0-9])[0-9]{2}-[0-9]{2}-[0-9]{2}$",
            "description": _REAL_BIRTH_DATE,
        },
    )
    sex = fields.String(required=True, validate=validate.OneOf(SEXES))
    phone = fields.String(validate=Pattern(r"^\+?[0-9 ()./-]{4,30}$", "Not a phone number."))
    insurance_number = fields.String(validate=validate.Length(min=1, max=40))


class RegisterSchema(MemberDetailsSchema):
    email = email_field()
    password = _new_password


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
    password = _new_password


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
    new_password = _new_password


class PasswordResetRequestSchema(StrictSchema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))


class PasswordResetConfirmSchema(StrictSchema):
    reset_token = fields.String(required=True, validate=validate.Length(min=1, max=200))
    new_password = _new_password
    totp_code = _code


class SignInSchema(ma.Schema):
    """One live sign-in of the caller (``GET /api/v1/auth/sessions``)."""

    id = fields.UUID(required=True, metadata={"description": "Opaque; ends it with DELETE."})
    kind = fields.String(required=True, validate=validate.OneOf(("api", "console")))
    device = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": 'A coarse label from the User-Agent ("Firefox on Linux").'},
    )
    created_at = fields.DateTime(required=True)
    last_used_at = fields.DateTime(
        required=True, metadata={"description": "The last sign-in or refresh of this sign-in."}
    )
    place = fields.String(
        required=True,
        allow_none=True,
        validate=validate.OneOf(("same_network",)),
        metadata={"description": '"same_network" when it began on the network asking now.'},
    )
    current = fields.Boolean(required=True)


class SignInListSchema(ma.Schema):
    items = fields.List(fields.Nested(SignInSchema), required=True)
