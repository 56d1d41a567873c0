"""Integrity tags over the rows that make the server act (SECURITY-MODEL key hierarchy 10).

A row that makes the server seal a key to someone, grant a role or a key, sign someone in, let
someone reset or enroll, or approve a retrieval is an *instruction*, and someone who can write
the database can plant instructions as easily as keys. Each such row carries ``row_tag``:
HMAC-SHA256, under a key derived from the integrity key in ``MEDCHAT_KEY_DIR``, over the
table's name and every column that decides the action (the row's own id among them, so a tag
copied to another row fails). Someone who can write rows cannot make a tag, so a planted or
altered row is refused before anything acts on it.

This module is the primitive: the canonical encoding and the MAC. Which tables and columns are
tagged, and when tags are made and checked, is decided once, in ``medchat.models.integrity``.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, NoReturn

from access_control import crypto

_KEY_INFO: Final = b"medchat/row-tag-key/v1"
_LABEL: Final = "medchat/row-tag/v1"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

Value = str | bytes | int | bool | uuid.UUID | datetime | None


def _part(value: Value) -> crypto.Part:
    """Datetimes as UTC microseconds (what both databases keep); the rest as they are.

    A naive datetime is read as UTC: SQLite hands back naive values when a table is read
    without the models' types (a migration's backfill), and every time here is UTC.
    """
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return f"t{(aware - _EPOCH) // _MICROSECOND}"
    return value


class RowTagger:
    """Makes and checks row tags. Holds a derived key; ``repr`` shows none of it."""

    __slots__ = ("_key",)

    def __init__(self, integrity_key: bytes) -> None:
        if len(integrity_key) < crypto.KEY_SIZE:
            raise ValueError("the integrity key needs at least 32 bytes")
        self._key = crypto.hkdf_sha256(integrity_key, salt=b"", info=_KEY_INFO, length=32)

    def __repr__(self) -> str:
        return "RowTagger()"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a row tagger holds key material and cannot be pickled")

    def tag(self, table: str, values: Sequence[Value]) -> bytes:
        """The tag of one row: ``values`` are its deciding columns, in the declared order."""
        return crypto.mac(self._key, _LABEL, table, len(values), *map(_part, values))

    def verify(self, table: str, values: Sequence[Value], tag: bytes | None) -> bool:
        """Whether ``tag`` is this row's tag (constant time; a missing tag never is)."""
        if tag is None:
            return False
        return hmac.compare_digest(tag, self.tag(table, values))
