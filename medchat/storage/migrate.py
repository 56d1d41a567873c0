"""Apply Alembic migrations programmatically (``medchat db upgrade`` and the test suite).

Some migrations change data that only the server keys can vouch for: tagging the rows of
tables that make the server act, gating live archive wraps (SECURITY-MODEL key hierarchy 10).
``medchat db upgrade`` hands Alembic a way to read the ``ServerKeys`` (``config.attributes``),
called only when such a migration asks ``migration_server_keys()`` for them; it refuses to run
over existing rows without them rather than leave rows the service would then refuse. An empty
database (a fresh install, the test suite) needs no keys, so none are read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from access_control.key_directory import ServerKeys
from medchat.db import make_engine

#: Alembic's scripts ship inside the package (package-data in pyproject.toml), so an installed
#: wheel migrates from site-packages, with no checkout beside it.
MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
_KEYS_ATTRIBUTE = "medchat_server_keys"

#: The server keys, or how to read them when (and only if) a migration needs them.
KeySource = ServerKeys | Callable[[], ServerKeys]


def alembic_config(database_url: str, keys: KeySource | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if keys is not None:
        config.attributes[_KEYS_ATTRIBUTE] = keys
    return config


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema stands: its revision (``None``: never migrated) and the head
    revision of the migrations shipped with this release (``medchat db current``)."""

    revision: str | None
    head: str

    @property
    def is_head(self) -> bool:
        return self.revision == self.head


@dataclass(frozen=True)
class Upgrade:
    """What ``upgrade`` did: from which revision to which, and the revisions applied in order
    (empty when the schema was already at the target)."""

    before: str | None
    after: str | None
    applied: tuple[str, ...]


def _label(revisions: tuple[str, ...]) -> str | None:
    """One revision id, or several joined by commas while branches are unmerged."""
    return ",".join(sorted(revisions)) or None


def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS))


def _current_revisions(database_url: str) -> tuple[str, ...]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return tuple(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def schema_state(database_url: str) -> SchemaState:
    """The database's revision next to the head this release would bring it to."""
    head = _label(tuple(_scripts().get_heads()))
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS}")
    return SchemaState(revision=_label(_current_revisions(database_url)), head=head)


def upgrade(database_url: str, revision: str = "head", keys: KeySource | None = None) -> Upgrade:
    """Bring the schema at ``database_url`` to ``revision`` (idempotent); says what it did."""
    before = _current_revisions(database_url)
    command.upgrade(alembic_config(database_url, keys), revision)
    after = _current_revisions(database_url)
    # Alembic walks from ``after`` down to (not including) ``before``: oldest first, reversed.
    walked = _scripts().iterate_revisions(after, before or "base") if after != before else ()
    applied = tuple(reversed([script.revision for script in walked]))
    return Upgrade(before=_label(before), after=_label(after), applied=applied)


def migration_server_keys(purpose: str) -> ServerKeys:
    """The server keys, inside a migration that needs them for existing rows.

    Raises ``RuntimeError`` naming ``purpose`` when the migration was started without them
    (plain ``alembic upgrade``): run ``medchat db upgrade`` on a host with ``MEDCHAT_KEY_DIR``.
    """
    keys: KeySource | None = context.config.attributes.get(_KEYS_ATTRIBUTE)
    if keys is None:
        raise RuntimeError(
            f"this migration {purpose} and needs the server keys: "
            "run 'medchat db upgrade' with MEDCHAT_KEY_DIR set"
        )
    return keys if isinstance(keys, ServerKeys) else keys()
