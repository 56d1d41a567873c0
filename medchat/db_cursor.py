"""A psycopg cursor whose ``description`` makes its column objects only when looked at.

psycopg builds ``cursor.description`` afresh on every read of the property: one ``Column``
object per result column, each decoding the column's name and looking up its type. SQLAlchemy
reads the property after every statement that returns rows, but uses the columns only the
first time a compiled statement runs; after that it takes the result's layout from the
compiled statement's cache and looks at nothing but whether the description is ``None``. So
on the request path psycopg made dozens of ``Column`` objects per statement that nobody read:
about 7 % of a send's samples in-process (the locked read alone returns some forty columns;
``python -m bench.instructions`` and bench/README.md have the figures).

``ColumnsOnDemandCursor.description`` answers ``None`` exactly when psycopg's does, and
otherwise a sequence that holds the result it describes and makes psycopg's own ``Column``
objects from it on first use: the same values, whichever result the cursor has moved on to
meanwhile. Nothing else of the cursor changes. ``medchat.db.postgresql_engine`` installs it
on every PostgreSQL connection (``connect_args``); SQLite is untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final, overload

import psycopg
from psycopg import pq

#: The statuses for which psycopg describes columns even when there are none ("SELECT ;").
_DESCRIBED_STATUSES: Final = frozenset(
    {pq.ExecStatus.TUPLES_OK, pq.ExecStatus.SINGLE_TUPLE, pq.ExecStatus.TUPLES_CHUNK}
)


class _ResultOf:
    """What ``psycopg.Column`` reads of a cursor, for the one result it was asked about."""

    __slots__ = ("_encoding", "adapters", "pgresult")

    def __init__(self, cursor: psycopg.Cursor[Any], result: pq.abc.PGresult) -> None:
        self.pgresult = result
        self._encoding = cursor._encoding
        self.adapters = cursor.adapters


class ColumnsOnDemand(Sequence[psycopg.Column]):
    """The columns of one result, made the first time anything looks at them."""

    __slots__ = ("_columns", "_cursor", "_result")

    def __init__(self, cursor: psycopg.Cursor[Any], result: pq.abc.PGresult) -> None:
        self._cursor = cursor
        self._result = result
        self._columns: list[psycopg.Column] | None = None

    def _made(self) -> list[psycopg.Column]:
        if self._columns is None:
            source: Any = _ResultOf(self._cursor, self._result)
            self._columns = [psycopg.Column(source, i) for i in range(self._result.nfields)]
        return self._columns

    def __len__(self) -> int:
        return int(self._result.nfields)

    @overload
    def __getitem__(self, index: int) -> psycopg.Column: ...

    @overload
    def __getitem__(self, index: slice) -> list[psycopg.Column]: ...

    def __getitem__(self, index: int | slice) -> psycopg.Column | list[psycopg.Column]:
        return self._made()[index]

    def __iter__(self) -> Iterator[psycopg.Column]:
        return iter(self._made())

    def __repr__(self) -> str:
        return repr(self._made())


class ColumnsOnDemandCursor(psycopg.Cursor[Any]):
    """psycopg's cursor, but for a ``description`` whose columns are made on first use."""

    @property
    def description(self) -> ColumnsOnDemand | None:  # type: ignore[override]
        result = self.pgresult
        if result is None or not (result.nfields or result.status in _DESCRIBED_STATUSES):
            return None
        return ColumnsOnDemand(self, result)
