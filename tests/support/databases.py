"""Fresh databases for a test run: a SQLite file always, PostgreSQL when configured.

``MEDCHAT_TEST_DATABASE_URL`` names a PostgreSQL server and a database to connect to; each
run creates its own uniquely named database there (and drops it afterwards), so runs never
share state. The schema is made by Alembic, exactly as in production.

``MEDCHAT_TEST_SCHEMA_CACHE`` (set by ``tools/mutation.py``, whose every mutant is a pytest run
of its own) names a directory: the first run migrates once and keeps the result, a SQLite file
there and a PostgreSQL template database named after the same key, and later runs copy it
(``CREATE DATABASE ... TEMPLATE``) instead of running every migration again, about a second of
CPU per run and backend. The key is a digest of the migration files, so a changed migration
makes a new copy. Unset (``make test``, CI): every run migrates, as before.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
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
CACHE_ENV = "MEDCHAT_TEST_SCHEMA_CACHE"
MIGRATIONS = Path(__file__).resolve().parents[2] / "medchat" / "migrations"


def schema_key() -> str:
    """A digest of every migration file: the schema a copy was made from."""
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS.rglob("*.py")):
        digest.update(path.relative_to(MIGRATIONS).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def backends() -> list[str]:
    """SQLite, and PostgreSQL when configured; ``MEDCHAT_TEST_BACKENDS`` (``tools/mutation.py``
    for a module with no path of SQLite's own) may keep only some of them."""
    available = ["sqlite", "postgresql"] if os.environ.get(PG_ENV) else ["sqlite"]
    wanted = os.environ.get("MEDCHAT_TEST_BACKENDS")
    return [b for b in available if b in wanted.split(",")] if wanted else available


@contextmanager
def fresh_database(backend: str, workdir: Path, *, migrate: bool = True) -> Iterator[str]:
    """A database of this run's own; ``migrate=False``: left empty (no schema at all)."""
    cache = os.environ.get(CACHE_ENV)
    if backend == "sqlite":
        path = workdir / "medchat-test.sqlite3"
        url = f"sqlite:///{path}"
        if migrate and cache:
            _copy_of_migrated_sqlite(Path(cache), path)
        elif migrate:
            upgrade(url)
        yield url
        return
    admin_url = make_url(os.environ[PG_ENV].replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"medchat_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    template = _migrated_template(admin) if migrate and cache else None
    with admin.connect() as connection:
        copy_of = f' TEMPLATE "{template}"' if template else ""
        connection.execute(text(f'CREATE DATABASE "{name}"{copy_of}'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        if migrate and not template:
            upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _copy_of_migrated_sqlite(cache: Path, path: Path) -> None:
    kept = cache / f"medchat-schema-{schema_key()}.sqlite3"
    if not kept.exists():
        cache.mkdir(parents=True, exist_ok=True)
        upgrade(f"sqlite:///{path}")
        partial = kept.with_suffix(f".{os.getpid()}.partial")
        shutil.copyfile(path, partial)
        os.replace(partial, kept)  # whole or absent, whoever of two runs finishes first
        return
    shutil.copyfile(kept, path)


def _template_prefix(cache: str) -> str:
    """Template names of one cache directory: another job's (a second checkout on the same
    server) are never reused or dropped by this one."""
    return f"medchat_schema_{hashlib.sha256(cache.encode()).hexdigest()[:8]}_"


def _migrated_template(admin) -> str:  # type: ignore[no-untyped-def]
    """The name of a migrated template database for this schema, made once (under an
    advisory lock, so two runs starting together make it once) and never connected to again."""
    name = _template_prefix(os.environ[CACHE_ENV]) + schema_key()
    with admin.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": name})
        try:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if not exists:
                building = f"{name}_{os.getpid()}"
                connection.execute(text(f'CREATE DATABASE "{building}"'))
                upgrade(admin.url.set(database=building).render_as_string(hide_password=False))
                connection.execute(text(f'ALTER DATABASE "{building}" RENAME TO "{name}"'))
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": name})
    return name


def drop_schema_templates(admin_url: str, cache: str) -> None:
    """Drop the PostgreSQL template databases made for the cache directory ``cache``."""
    admin = create_engine(make_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            names = connection.execute(
                text("SELECT datname FROM pg_database WHERE starts_with(datname, :prefix)"),
                {"prefix": _template_prefix(cache)},
            ).scalars()
            for name in list(names):
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
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
