"""Opaque cursors: clients pass back what they were given and never build one themselves.

A cursor is base64url JSON of a keyset position. The typed decoders below are the one place
that checks a position's shape, so a forged or garbled cursor is a 422, never a 500 or a
query on a value of the wrong type.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from medchat.errors import ValidationFailed

_NOT_A_CURSOR = {"cursor": ["Not a valid cursor."]}
#: Sequence numbers are 64-bit database integers: a larger one is an OverflowError in the
#: SQLite driver and out of range for PostgreSQL, so it is no cursor of ours.
_MAX_SEQ = 2**63 - 1


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
        raise ValidationFailed(details=_NOT_A_CURSOR) from exc


def decode_seq_cursor(cursor: str | None) -> int | None:
    """A sequence-number position (message, access-log and audit pages); 422 unless it is a
    plain integer a database column can hold (0 to 2^63 - 1)."""
    position = decode_cursor(cursor)
    if position is None:
        return None
    # bool is an int in Python, but no sequence number.
    if not isinstance(position, int) or isinstance(position, bool):
        raise ValidationFailed(details=_NOT_A_CURSOR)
    if not 0 <= position <= _MAX_SEQ:
        raise ValidationFailed(details=_NOT_A_CURSOR)
    return position


def encode_activity_cursor(position: tuple[datetime, uuid.UUID] | None) -> str | None:
    """Encode a (last activity, id) keyset position; ``None`` stays ``None`` (last page)."""
    if position is None:
        return None
    at, row_id = position
    return encode_cursor([at.isoformat(), str(row_id)])


def decode_activity_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """A (last activity, id) position (conversation lists); 422 unless it has that shape.

    The time comes back in UTC: a far date with an offset ("9999-12-31T23:59:59-05:00") has
    no UTC form (``OverflowError``), so it is refused here rather than in the query.
    """
    position = decode_cursor(cursor)
    if position is None:
        return None
    try:
        at_text, id_text = position
        at = datetime.fromisoformat(at_text)
        row_id = uuid.UUID(id_text)
        if at.tzinfo is None:
            raise ValueError("a naive time")
        at = at.astimezone(UTC)
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise ValidationFailed(details=_NOT_A_CURSOR) from exc
    return at, row_id
