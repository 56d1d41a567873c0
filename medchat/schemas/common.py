"""Shapes shared by every endpoint: the error body and cursor pagination."""

from __future__ import annotations

from datetime import UTC, datetime

import marshmallow as ma
from marshmallow import fields, validate


class StrictSchema(ma.Schema):
    """Unknown fields are an error, not silently dropped."""

    class Meta:
        unknown = ma.RAISE


class ErrorBodySchema(ma.Schema):
    code = fields.String(required=True, metadata={"description": "snake_case error code"})
    message = fields.String(required=True)
    details = fields.Raw(metadata={"description": "field errors (422) or extra data"})


class ErrorSchema(ma.Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


class PageArgsSchema(StrictSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=100))
    cursor = fields.String(load_default=None, validate=validate.Length(max=200))


class StatusSchema(ma.Schema):
    status = fields.String(required=True)


def utc_iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix, as API.md "Conventions" asks."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class UtcDateTime(fields.DateTime):
    """ISO 8601 in UTC with a ``Z`` suffix, as API.md "Conventions" asks."""

    def _serialize(self, value, attr, obj, **kwargs):  # type: ignore[no-untyped-def]
        return utc_iso(value)
