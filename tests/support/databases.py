"""Fresh databases for a test run: a SQLite file always, PostgreSQL when configured.

``MEDCHAT_TEST_DATABASE_URL`` names a PostgreSQL server and a database to connect to; each
run creates its own uniquely named database there (and drops it afterwards), so runs never
share state. The schema is made by Alembic, exactly as in production.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from medchat.archive.ledger import ARCHIVE_CHAIN
from medchat.audit.verification import CHAINS as AUDIT_CHAINS
from medchat.db import Base
from medchat.storage.migrate import upgrade

PG_ENV = "MEDCHAT_TEST_DATABASE_URL"


def backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(PG_ENV) else ["sqlite"]


@contextmanager
def fresh_database(backend: str, workdir: Path, *, migrate: bool = True) -> Iterator[str]:
    """A database of this run's own; ``migrate=False``: left empty (no schema at all)."""
    if backend == "sqlite":
        url = f"sqlite:///{workdir / 'medchat-test.sqlite3'}"
        if migrate:
            upgrade(url)
        yield url
        return
    admin_url = make_url(os.environ[PG_ENV].replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"medchat_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def empty_all_tables(engine) -> None:  # type: ignore[no-untyped-def]
    """Delete every row (children first) and rewind the chain heads to genesis."""
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name == "chain_heads":
                continue
            connection.execute(table.delete())
        # Every head the migrations make, back at genesis (a test may have removed one).
        connection.execute(text("DELETE FROM chain_heads"))
        connection.execute(
            text("INSERT INTO chain_heads (chain, seq, entry_hash, mac) VALUES (:c, 0, :z, :z)"),
            [{"c": chain, "z": bytes(32)} for chain in (*AUDIT_CHAINS, ARCHIVE_CHAIN)],
        )
        if connection.dialect.name == "postgresql":
            connection.execute(text("ALTER SEQUENCE audit_entry_seq RESTART WITH 1"))
