"""What protects each table against someone who can write the database (SECURITY-MODEL 10).

Every table declares one of three answers, next to its columns (``__row_integrity__``), and
``tests/security/test_planted_rows.py`` fails for a table that declares none, so a new table
joins the rule by itself:

- ``tagged(...)``: its rows make the server act (seal, grant, sign in, reset, enroll, approve,
  replay a stored result). The row carries ``row_tag``, an HMAC by a key outside the database
  over the table name and the listed columns (``access_control.row_tags``); the tag is made
  when the server writes the row and checked whenever the row is loaded
  (``medchat.storage.row_integrity``). List every column whose value decides what the server does.
- ``covered(reason)``: its rows are protected by a mechanism of their own (a key integrity
  tag, HPKE info and key commitment, associated data, a signature, a MAC chain).
- ``inert(reason)``: a planted or altered row makes the server hand nothing to anyone, at worst
  it shows wrong or no data (a database writer can always destroy and deny service).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import LargeBinary
from sqlalchemy.orm import Mapped, mapped_column


@dataclass(frozen=True)
class RowIntegrity:
    kind: Literal["tagged", "covered", "inert"]
    columns: tuple[str, ...] = ()
    reason: str = ""


def tagged(*columns: str) -> RowIntegrity:
    """Rows are instructions: tag these deciding columns (the primary key first)."""
    if not columns:
        raise ValueError("a tagged table names the columns its tag covers")
    return RowIntegrity("tagged", columns)


def covered(reason: str) -> RowIntegrity:
    return RowIntegrity("covered", reason=reason)


def inert(reason: str) -> RowIntegrity:
    return RowIntegrity("inert", reason=reason)


class TaggedRow:
    """The ``row_tag`` column of a tagged table. NULL only in a row the server never wrote,
    and such a row fails verification like a wrong tag."""

    row_tag: Mapped[bytes | None] = mapped_column(LargeBinary(32))


def integrity_of(cls: type) -> RowIntegrity | None:
    return getattr(cls, "__row_integrity__", None)
