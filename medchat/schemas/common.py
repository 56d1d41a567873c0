"""Shapes shared by every endpoint: the error body, cursor pagination and the text rule."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from medchat.clock import iso_z

#: Characters no field of ours holds: C0 controls but tab, line feed and carriage return
#: (NUL above all: PostgreSQL refuses it in text, so it was a 500), DEL, and lone surrogates
#: (not Unicode: no encoder, blind index or driver takes them).
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
NOT_TEXT_MESSAGE = "Must not contain control characters (NUL and the like)."


def refuse_control_characters(data: Any) -> None:
    """Raise ``ValidationError`` naming each field whose string value holds a character of
    ``_NOT_TEXT``. The one text rule of every request schema (``StrictSchema``), for bodies
    and query strings alike; ``medchat.web.json_bodies`` refuses lone surrogates in keys earlier."""
    if not isinstance(data, Mapping):
        return
    errors = {}
    for name in list(data):
        value = data[name]
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and _NOT_TEXT.search(item):
                errors[str(name)] = [NOT_TEXT_MESSAGE]
    if errors:
        raise ma.ValidationError(errors)


class StrictSchema(ma.Schema):
    """Every request schema: unknown fields are an error, not silently dropped, and no string
    holds a control character (``refuse_control_characters``)."""

    class Meta:
        unknown = ma.RAISE

    @ma.pre_load
    def _refuse_control_characters(self, data: Any, **_kwargs: Any) -> Any:
        refuse_control_characters(data)
        return data


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
    return iso_z(value.astimezone(UTC))


class UtcDateTime(fields.DateTime):
    """ISO 8601 in UTC with a ``Z`` suffix, as API.md "Conventions" asks."""

    def _serialize(self, value, attr, obj, **kwargs):  # type: ignore[no-untyped-def]
        return utc_iso(value)
