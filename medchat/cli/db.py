"""``medchat db``: apply the migrations and say which; tell whether the schema is the head."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from medchat.cli.output import cli_errors, emit, json_option, loaded_runtime


@click.group("db", help="Database schema.")
def db_group() -> None:
    pass


@db_group.command("upgrade", help="Apply the Alembic migrations (idempotent).")
@json_option
@with_appcontext
@cli_errors
def db_upgrade(as_json: bool) -> None:
    """Says what it applied, so a deploy log shows which migrations ran and from where."""
    from medchat.storage.migrate import upgrade

    runtime = loaded_runtime()
    done = upgrade(runtime.settings.database_url, keys=runtime.keys)
    if not done.applied:
        text = f"database is up to date at {done.after} (nothing applied)"
    else:
        origin = f"from {done.before}" if done.before else "an empty database"
        text = f"upgraded {origin} to {done.after}: applied {', '.join(done.applied)}"
    payload = {"ok": True, "from": done.before, "to": done.after, "applied": list(done.applied)}
    emit(as_json, payload, text)


@db_group.command("current", help="The database's schema revision and whether it is the head.")
@json_option
@with_appcontext
@cli_errors
def db_current(as_json: bool) -> None:
    """Read only: tells an operator whether ``db upgrade`` is due, before a deploy or after."""
    from medchat.storage.migrate import schema_state

    state = schema_state(loaded_runtime().settings.database_url)
    if state.is_head:
        text = f"{state.revision} (head)"
    else:
        where = state.revision or "empty database"
        text = f"{where}; head is {state.head}: run 'medchat db upgrade'"
    payload = {"revision": state.revision, "head": state.head, "is_head": state.is_head}
    emit(as_json, payload, text)
