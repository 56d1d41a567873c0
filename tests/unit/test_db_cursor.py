"""``medchat.db_cursor``: a description whose columns are made on first use says exactly what
psycopg's own says, for the result it was taken from (PostgreSQL only)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from medchat.db_cursor import ColumnsOnDemand, ColumnsOnDemandCursor
from tests.support.made import objects_made

_FIELDS = ("name", "type_code", "display_size", "internal_size", "precision", "scale", "null_ok")
_TYPED = (
    "SELECT 1::int AS n, 'x'::text AS t, 2.5::numeric(6, 2) AS d, now() AS at,"
    " gen_random_uuid() AS id, '\\x00'::bytea AS b, NULL AS nothing, true AS yes"
)


@pytest.fixture
def connections(database_url: str) -> Iterator[tuple[psycopg.Connection[Any], ...]]:
    """Two connections to the test database: one with psycopg's cursor, one with ours."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs MEDCHAT_TEST_DATABASE_URL (PostgreSQL)")
    url = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    plain = psycopg.connect(url)
    ours = psycopg.connect(url, cursor_factory=ColumnsOnDemandCursor)
    yield plain, ours
    plain.close()
    ours.close()


def _described(description: Any) -> list[tuple[Any, ...]] | None:
    if description is None:
        return None
    return [tuple(getattr(column, field) for field in _FIELDS) for column in description]


@pytest.mark.parametrize(
    "statement",
    [
        _TYPED,
        "SELECT",  # no columns, but tuples: described as an empty list, not None
        "SELECT 1 AS a WHERE false",  # no rows, still columns
        "SET search_path TO public",  # no tuples: None
        "CREATE TEMPORARY TABLE t (a int)",
    ],
)
def test_the_description_says_what_psycopgs_says(connections, statement):
    plain, ours = connections
    theirs = plain.cursor().execute(statement).description
    mine = ours.cursor().execute(statement).description

    assert _described(mine) == _described(theirs)
    if theirs is not None:
        assert isinstance(mine, ColumnsOnDemand)
        assert len(mine) == len(theirs)
        assert _described(mine[-2:]) == _described(theirs[-2:])
        assert [c.name for c in mine] == [c.name for c in theirs]


def test_a_description_kept_describes_its_own_result_after_the_cursor_moved_on(connections):
    _, ours = connections
    cursor = ours.cursor()
    first = cursor.execute(_TYPED).description
    cursor.execute("SELECT 'other'::text AS other")

    assert first is not None
    assert [c.name for c in first] == ["n", "t", "d", "at", "id", "b", "nothing", "yes"]
    assert [c.name for c in cursor.description or []] == ["other"]


def test_no_column_object_is_made_until_something_reads_one(connections, monkeypatch):
    _, ours = connections
    made = objects_made(monkeypatch, psycopg.Column)
    description = ours.cursor().execute(_TYPED).description

    assert description is not None and len(description) == 8
    assert made == []
    assert description[0].name == "n"
    assert len(made) == 8
