"""No planted or altered row makes the server seal, grant or sign in (SECURITY-MODEL 10).

The class test of the database-writer threat. It does not list attacks: it walks the schema.

1. Every table of the metadata declares what protects it (``__row_integrity__``: tagged,
   covered by a mechanism of its own, or inert, with the reason); a new table that declares
   nothing fails here. A tagged table's tag covers its id and every foreign key.
2. For every tagged table, every deciding column, altered through SQL on a genuine row, makes
   the row refused when the server loads it (409 ``row_integrity_failed``, audited).
3. For every tagged table, rows are planted and genuine rows altered to name the attacker, then
   the server does its work: ``test_planted_rows_server_work.py``.

The world both attack (a row in every tagged table, made by the server) and the attacker's
writes are ``tests/support/planted_world.py``. On PostgreSQL the attacker's statements run as
``medchat_app`` (``deploy/postgres-roles.sql``): the login the application itself has, no more.
"""

from __future__ import annotations

import pytest
from sqlalchemy import UniqueConstraint, select

from medchat.db import Base
from medchat.errors import RowIntegrityFailure
from medchat.models import AuditEntry
from medchat.models.integrity import integrity_of, tagged
from medchat.services.context import ServiceContext
from tests.support.planted_world import (
    MAPPERS,
    TAGGED,
    alter,
    attacker_value,
    load_every_row,
    rows,
    write,
)

# -- 1. every table declares what protects it --------------------------------------------------


def undeclared(tables: dict[str, type]) -> list[str]:
    """Tables with no declaration, or a declaration that does not hold for the table."""
    problems = []
    for name, cls in tables.items():
        spec = integrity_of(cls)
        if spec is None:
            problems.append(f"{name}: no __row_integrity__")
            continue
        if spec.kind != "tagged":
            if len(spec.reason) < 20:
                problems.append(f"{name}: {spec.kind} needs its reason")
            continue
        table = cls.__table__  # type: ignore[attr-defined]
        if "row_tag" not in table.c:
            problems.append(f"{name}: no row_tag column")
        if spec.columns[:1] != ("id",):
            problems.append(f"{name}: the tag starts with the row's id")
        for column in spec.columns:
            if column not in table.c:
                problems.append(f"{name}: tags a column it does not have: {column}")
        for key in table.foreign_keys:
            if key.parent.name not in spec.columns:
                problems.append(f"{name}: foreign key {key.parent.name} is not tagged")
    return problems


def test_every_table_of_the_schema_declares_what_protects_it():
    assert set(MAPPERS) == set(Base.metadata.tables)
    assert undeclared(MAPPERS) == []
    assert {"accounts", "auth_tokens", "role_key_grants", "rewrap_requests"} <= set(TAGGED)


def test_the_declaration_check_can_fail():
    class Undeclared:
        __tablename__ = "undeclared"

    assert undeclared({"undeclared": Undeclared}) == ["undeclared: no __row_integrity__"]

    class Shy:  # a grant table whose tag forgets who holds the grant
        __table__ = MAPPERS["role_key_grants"].__table__  # type: ignore[attr-defined]
        __row_integrity__ = tagged("id", "wrap")

    assert "grants: foreign key account_id is not tagged" in undeclared({"grants": Shy})


# -- 2. every deciding column of every tagged table is covered ---------------------------------


def test_the_attackers_value_differs_from_every_stored_one(runtime, planted_world):
    """The alteration below takes whichever row the database returns first, and PostgreSQL's
    order varies: so every row of every tagged table must get a value that alters it. (CI once
    drew the attacker's own known device, and ``account_id`` was written back unchanged.)"""
    unaltered = [
        f"{table}.{column} of {row['id']}"
        for table in sorted(TAGGED)
        for row in rows(runtime, table)
        for column in integrity_of(TAGGED[table]).columns  # type: ignore[union-attr]
        if column != "id"
        and attacker_value(runtime, planted_world, table, column, row[column]) == row[column]
    ]
    assert not unaltered


@pytest.mark.parametrize("table", sorted(TAGGED))
def test_altering_any_deciding_column_gets_the_row_refused(
    runtime, planted_world, as_app_role, table
):
    cls = TAGGED[table]
    columns = integrity_of(cls).columns  # type: ignore[union-attr]
    genuine = rows(runtime, table)[0]
    load_every_row(runtime, cls)  # the genuine rows load
    refused_before = _audited(runtime, "integrity.row_refused")
    altered = 0
    unalterable: list[str] = []
    for column in columns:
        if column == "id":
            continue
        if not alter(runtime, planted_world, as_app_role, table, genuine, column):
            unalterable.append(column)  # the schema admits no other value here
            continue
        altered += 1
        with pytest.raises(RowIntegrityFailure):
            load_every_row(runtime, cls)
        write(
            runtime,
            None,
            f"UPDATE {table} SET {column} = :{column} WHERE id = :id",
            table,
            {column: genuine[column], "id": genuine["id"]},
        )
        load_every_row(runtime, cls)
    # Only a column that a unique constraint pairs with another (a conversation's epoch
    # numbers) may hold out against every single-column write; any other went unproven.
    paired = {
        column.name
        for constraint in Base.metadata.tables[table].constraints
        if isinstance(constraint, UniqueConstraint) and len(constraint.columns) > 1
        for column in constraint.columns
    }
    assert set(unalterable) <= paired, f"{table}: no value could be written to {unalterable}"
    assert altered >= len(columns) // 2, "too few columns could be altered to prove anything"
    assert _audited(runtime, "integrity.row_refused") > refused_before


def _audited(runtime: ServiceContext, action: str) -> int:
    with runtime.database.transaction() as session:
        return len(session.scalars(select(AuditEntry.id).where(AuditEntry.action == action)).all())
