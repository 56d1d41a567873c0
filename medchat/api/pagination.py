"""Opaque cursors: clients pass back what they were given and never build one themselves."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from medchat.errors import ValidationFailed


def encode_cursor(position: Any) -> str:
    raw = json.dumps(position, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    """The position a cursor stands for; ``None`` for the first page; 422 if malformed."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(details={"cursor": ["Not a valid cursor."]}) from exc
