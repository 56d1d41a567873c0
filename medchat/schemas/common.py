"""Shapes shared by every endpoint: the error body, cursor pagination and the text rule."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from medchat.clock import iso_z
from medchat.schemas.cursors import (
    ACTIVITY_CURSOR_PATTERN,
    CURSOR_MESSAGE,
    SEQ_CURSOR_PATTERN,
)

#: Characters no field of ours holds: C0 controls but tab, line feed and carriage return
#: (NUL above all: PostgreSQL refuses it in text, so it was a 500), DEL, and lone surrogates
#: (not Unicode: no encoder, blind index or driver takes them).
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
NOT_TEXT_MESSAGE = "Must not contain control characters (NUL and the like)."
#: ``_NOT_TEXT`` as the OpenAPI document states it: a JSON Schema ``pattern`` every string of
#: a request schema carries unless a stricter one of its own already excludes these
#: characters (``medchat.api.openapi``). Escapes only, so the document stays ASCII. Lone
#: surrogates are left out of it: no UTF-8 text holds one, and a JSON body that spells one
#: with an escape is refused before any schema, 400 (``medchat.web.json_bodies``).
_CONTROL = r"\x00-\x08\x0B\x0C\x0E-\x1F\x7F"
#: White space as ``str.isspace`` (and so ``str.strip``) knows it, spelled out: ECMA-262's
#: ``\s`` and Python's differ (U+0085, U+FEFF), a list means the same to both engines.
_SPACE = r"\t\n\x0B\x0C\r\x1C-\x20\x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000"
TEXT_PATTERN = rf"^[^{_CONTROL}]*$"
#: Text with at least one character that is not white space (a message body, a subject).
NON_BLANK_TEXT_PATTERN = rf"^[^{_CONTROL}]*[^{_SPACE}{_CONTROL}][^{_CONTROL}]*$"


#: The addresses accepted, as a pattern that holds together with ``fields.Email``'s check and
#: JSON Schema's ``format: email``: an ASCII dot-atom before the @ (RFC 5322: no quoted or
#: internationalised local part), a domain of letter-or-digit labels (hyphens inside) and a
#: last label of two characters or more.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
EMAIL_PATTERN = (
    rf"^{_ATEXT}(?:\.{_ATEXT})*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.)+"
    r"[A-Za-z0-9-]{2,}\.?$"
)


def email_field(max_length: int = 254) -> fields.Email:
    """An e-mail address: marshmallow's check and the pattern the document shows with it."""
    return fields.Email(
        required=True,
        validate=[
            validate.Length(max=max_length),
            Pattern(EMAIL_PATTERN, "Not a valid email address."),
        ],
    )


def text_spanning(characters: int) -> str:
    """Text whose part from the first to the last character that is not white space is at
    least ``characters`` long (``len(value.strip()) >= characters``), as a pattern."""
    edge = f"[^{_SPACE}{_CONTROL}]"
    return rf"^[^{_CONTROL}]*{edge}[^{_CONTROL}]{{{characters - 2},}}{edge}[^{_CONTROL}]*$"


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


class Pattern(validate.Validator):
    """A regular expression that is the check and, as JSON Schema ``pattern``, the document.

    apispec publishes ``regex.pattern`` (as for ``validate.Regexp``); the check follows
    ECMA-262, as JSON Schema does: the expression is searched for (not matched at the
    start only), and a closing ``$`` matches at the very end only, where Python's would also
    match before a final line feed ("123456\\n"). So the server accepts exactly what the
    document promises.
    """

    def __init__(self, pattern: str, error: str) -> None:
        self.regex = re.compile(pattern)
        self._check = re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern)
        self.error = error

    def _repr_args(self) -> str:
        return f"pattern={self.regex.pattern!r}"

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str) or self._check.search(value) is None:
            raise ma.ValidationError(self.error or "Invalid value.")
        return value


class StrictSchema(ma.Schema):
    """Every request schema: unknown fields are an error, not silently dropped, and no string
    holds a control character (``refuse_control_characters``)."""

    class Meta:
        unknown = ma.RAISE

    @ma.pre_load
    def _refuse_control_characters(self, data: Any, **_kwargs: Any) -> Any:
        refuse_control_characters(data)
        return data


class JsonBoolean(fields.Boolean):
    """JSON's ``true`` or ``false`` and nothing else. marshmallow's ``Boolean`` also takes
    ``"yes"``, ``"on"``, ``"1"``, ``1`` and more (and ``1 in {True}`` holds, so narrowing its
    ``truthy`` set does not keep ``1`` out): a body the document refuses would be taken.
    Every boolean of a request body is one (``tests/api/test_request_numbers.py``)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if value is True or value is False:
            return value
        raise self.make_error("invalid", input=value)


class ErrorBodySchema(ma.Schema):
    code = fields.String(required=True, metadata={"description": "snake_case error code"})
    message = fields.String(required=True)
    details = fields.Raw(metadata={"description": "field errors (422) or extra data"})


class ErrorSchema(ma.Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


def _cursor(pattern: str, kind: str) -> fields.String:
    return fields.String(
        load_default=None,
        validate=Pattern(pattern, CURSOR_MESSAGE),
        metadata={
            "description": f"The `next_cursor` of the previous page ({kind}); opaque: pass it "
            "back as it came. Absent for the first page."
        },
    )


class PageArgsSchema(StrictSchema):
    """A page of items ordered by sequence number (messages, access log, audit, records)."""

    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=100))
    cursor = _cursor(SEQ_CURSOR_PATTERN, "a sequence position")


class ActivityPageArgsSchema(PageArgsSchema):
    """A page of items ordered by last activity (conversation lists, the queue, retrievals)."""

    cursor = _cursor(ACTIVITY_CURSOR_PATTERN, "an activity position")


class StatusSchema(ma.Schema):
    status = fields.String(required=True)


class FullDate(fields.Date):
    """A date written as RFC 3339's full-date (``YYYY-MM-DD``) and no other way: what JSON
    Schema's ``format: date`` means. (``date.fromisoformat`` also takes "20200101" and
    "2020-W01-1", which the document would call invalid.)"""

    _FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or self._FULL_DATE.fullmatch(value) is None:
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE)
        return super()._deserialize(value, attr, data, **kwargs)


def utc_iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix, as API.md "Conventions" asks."""
    if value is None:
        return None
    return iso_z(value.astimezone(UTC))


class UtcDateTime(fields.DateTime):
    """ISO 8601 in UTC with a ``Z`` suffix, as API.md "Conventions" asks."""

    def _serialize(
        self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any
    ) -> str | None:
        return utc_iso(value)
