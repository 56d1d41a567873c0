"""A clinician's draft answer: the body as an answer's (1 to 10,000 characters, not blank)."""

from __future__ import annotations

from marshmallow import fields

from medchat.schemas.common import StrictSchema, UtcDateTime
from medchat.schemas.conversations import MessageCreateSchema


class DraftSaveSchema(MessageCreateSchema):
    """``PUT .../draft``: the whole text, replacing the one saved before."""


class DraftSchema(StrictSchema):
    body = fields.String(required=True)
    updated_at = UtcDateTime(required=True)
