"""Opaque cursors: clients pass back what they were given and never build one themselves.

A cursor is a keyset position written so that one regular expression says exactly which
strings are cursors: the OpenAPI document publishes that expression as the parameter's
``pattern`` (``SEQ_CURSOR_PATTERN``, ``ACTIVITY_CURSOR_PATTERN``), so a generated client or a
contract test knows what is accepted without guessing, and the decoders below accept exactly
the strings it matches. A string that does not match is a 422, never a 500 or a query on a
value of the wrong type; a string that does is a position, possibly past the end (an empty
page).

- Sequence positions (messages, access log, audit, archive records): the number in decimal,
  1 to 18 digits, so every match fits a 64-bit database integer (2^63 - 1 has 19 digits).
- Activity positions (conversation lists, the queue, retrievals): the time in microseconds
  since 1970-01-01T00:00:00Z (1 to 17 digits: up to the year 5138, inside every date type
  used), a dot, and the row id as 32 lower-case hex digits.

Earlier releases sent base64 JSON; such a cursor is now a 422 and the client starts again
from the first page (docs/api.md).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from medchat.errors import ValidationFailed

#: ECMA-262 and Python agree on these (anchored, ASCII classes only); the decoders match
#: the whole string (``fullmatch``: a trailing newline is no cursor, as in ECMA-262).
SEQ_CURSOR_PATTERN = r"^[0-9]{1,18}$"
ACTIVITY_CURSOR_PATTERN = r"^[0-9]{1,17}\.[0-9a-f]{32}$"
CURSOR_MESSAGE = "Not a valid cursor."

_NOT_A_CURSOR = {"cursor": [CURSOR_MESSAGE]}
_SEQ = re.compile(SEQ_CURSOR_PATTERN[1:-1])
_ACTIVITY = re.compile(r"([0-9]{1,17})\.([0-9a-f]{32})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(position: int) -> str:
    """A sequence-number position (the last one a page showed)."""
    return str(position)


def decode_seq_cursor(cursor: str | None) -> int | None:
    """A sequence-number position (message, access-log, audit and record pages); ``None`` for
    the first page; 422 unless the cursor matches ``SEQ_CURSOR_PATTERN``."""
    if cursor is None:
        return None
    if _SEQ.fullmatch(cursor) is None:
        raise ValidationFailed(details=_NOT_A_CURSOR)
    return int(cursor)


def encode_activity_cursor(position: tuple[datetime, uuid.UUID] | None) -> str | None:
    """Encode a (last activity, id) keyset position; ``None`` stays ``None`` (last page).

    A time read back without its zone (SQLite) is UTC, as every stored time is.
    """
    if position is None:
        return None
    at, row_id = position
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return f"{(at - _EPOCH) // _MICROSECOND}.{row_id.hex}"


def decode_activity_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """A (last activity, id) position (conversation lists); 422 unless the cursor matches
    ``ACTIVITY_CURSOR_PATTERN``. The time comes back in UTC, exact to the microsecond."""
    if cursor is None:
        return None
    match = _ACTIVITY.fullmatch(cursor)
    if match is None:
        raise ValidationFailed(details=_NOT_A_CURSOR)
    micros, hex_id = match.groups()
    return _EPOCH + int(micros) * _MICROSECOND, uuid.UUID(hex=hex_id)
