"""``medchat db``: apply the migrations and say which; tell whether the schema is the head.

Neither command builds the application: a schema migration needs the database URL, not the
server keys, the archive-signing pin or the staff networks the service checks before it
serves. So the first ``medchat db upgrade`` of a new host runs before any key exists
(``deploy/bootstrap.sh``), and the owner role's environment needs nothing but its URL. The
server keys are read only if a migration asks for them, to rewrite rows that already exist
(``medchat.storage.migrate.migration_server_keys``); on an empty database none does.
"""

from __future__ import annotations

import click
from flask.cli import ScriptInfo

from medchat.cli.output import cli_errors, emit, json_option
from medchat.config import Settings

#: ``ScriptInfo.data`` key under which an embedding caller (the tests' CLI runner) hands the
#: settings of the app it built; the console script reads the environment.
SETTINGS = "medchat.settings"


def command_settings() -> Settings:
    """The settings these commands run with: the caller's, or ``MEDCHAT_*``."""
    info = click.get_current_context().find_object(ScriptInfo)
    given = info.data.get(SETTINGS) if info is not None else None
    return given if isinstance(given, Settings) else Settings.from_env()


@click.group("db", help="Database schema.")
def db_group() -> None:
    pass


@db_group.command("upgrade", help="Apply the Alembic migrations (idempotent).")
@json_option
@cli_errors
def db_upgrade(as_json: bool) -> None:
    """Says what it applied, so a deploy log shows which migrations ran and from where."""
    from access_control.key_directory import load_server_keys
    from medchat.storage.migrate import upgrade

    settings = command_settings()
    done = upgrade(
        settings.database_url,
        keys=lambda: load_server_keys(settings.key_dir, create_missing=not settings.is_production),
    )
    if not done.applied:
        text = f"database is up to date at {done.after} (nothing applied)"
    else:
        origin = f"from {done.before}" if done.before else "an empty database"
        text = f"upgraded {origin} to {done.after}: applied {', '.join(done.applied)}"
    payload = {"ok": True, "from": done.before, "to": done.after, "applied": list(done.applied)}
    emit(as_json, payload, text)


@db_group.command("current", help="The database's schema revision and whether it is the head.")
@json_option
@cli_errors
def db_current(as_json: bool) -> None:
    """Read only: tells an operator whether ``db upgrade`` is due, before a deploy or after."""
    from medchat.storage.migrate import schema_state

    state = schema_state(command_settings().database_url)
    if state.is_head:
        text = f"{state.revision} (head)"
    else:
        where = state.revision or "empty database"
        text = f"{where}; head is {state.head}: run 'medchat db upgrade'"
    payload = {"revision": state.revision, "head": state.head, "is_head": state.is_head}
    emit(as_json, payload, text)
