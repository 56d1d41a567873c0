"""How PostgreSQL plans a prepared statement: its generic and custom plans, counted."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine


def plans_after(
    engine: Engine, statement: Any, params: dict[str, Any], marker: str, times: int = 8
) -> list[tuple[int, int]]:
    """Run ``statement`` (a Core statement) ``times`` times as one psycopg prepared statement
    on one connection, committing after each, then return (generic plans, custom plans) of
    the prepared statements there whose SQL holds ``free_head`` and ``marker``.

    The chain heads table is compacted and analyzed first: in service it is the page or two
    that autovacuum keeps it, while the tests before leave it tens of pages long, which
    prices any generic plan over a custom one."""
    compiled = statement.compile(dialect=engine.dialect)
    values = {**compiled.params, **params}
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.autocommit = True
        driver.execute("VACUUM (FULL, ANALYZE) chain_heads")
        driver.autocommit = False
        for _ in range(times):
            driver.execute(str(compiled), values, prepare=True).fetchall()
            # Not a rollback: psycopg forgets every prepared statement at a ROLLBACK.
            driver.commit()
        plans = driver.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE '%%free_head%%' AND strpos(statement, %s) > 0",
            (marker,),
        ).fetchall()
        driver.rollback()
    return [(generic, custom) for generic, custom in plans]
