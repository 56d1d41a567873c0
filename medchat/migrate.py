"""Apply Alembic migrations programmatically (``medchat db upgrade`` and the test suite).

Some migrations change data that only the server keys can vouch for: tagging the rows of
tables that make the server act, gating live archive wraps (SECURITY-MODEL key hierarchy 10).
``medchat db upgrade`` hands its ``ServerKeys`` to Alembic (``config.attributes``); such a
migration asks ``migration_server_keys()`` for them, and refuses to run over existing rows
without them rather than leave rows the service would then refuse. An empty database (a fresh
install, the test suite) needs no keys.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config

from access_control.key_directory import ServerKeys

#: Alembic's scripts ship inside the package (package-data in pyproject.toml), so an installed
#: wheel migrates from site-packages, with no checkout beside it.
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_KEYS_ATTRIBUTE = "medchat_server_keys"


def alembic_config(database_url: str, keys: ServerKeys | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if keys is not None:
        config.attributes[_KEYS_ATTRIBUTE] = keys
    return config


def upgrade(database_url: str, revision: str = "head", keys: ServerKeys | None = None) -> None:
    """Bring the schema at ``database_url`` to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(database_url, keys), revision)


def migration_server_keys(purpose: str) -> ServerKeys:
    """The server keys, inside a migration that needs them for existing rows.

    Raises ``RuntimeError`` naming ``purpose`` when the migration was started without them
    (plain ``alembic upgrade``): run ``medchat db upgrade`` on a host with ``MEDCHAT_KEY_DIR``.
    """
    keys = context.config.attributes.get(_KEYS_ATTRIBUTE)
    if keys is None:
        raise RuntimeError(
            f"this migration {purpose} and needs the server keys: "
            "run 'medchat db upgrade' with MEDCHAT_KEY_DIR set"
        )
    return keys  # type: ignore[no-any-return]
