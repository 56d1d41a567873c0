"""The ``medchat`` command: migrations, bootstrap, verification, local demo.

Every command takes ``--json`` and then prints one JSON object on stdout; without it, text for
people. Success exits 0; a failure exits non-zero with a one-line reason on stderr
(API.md "Bootstrap and operations").
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any, NoReturn

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from medchat import audit
from medchat.errors import ConfigurationError, MedchatError
from medchat.runtime import Runtime

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def _runtime() -> Runtime:
    return current_app.extensions["medchat"]  # type: ignore[no-any-return]


def emit(as_json: bool, payload: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(payload, default=str) if as_json else text)


def fail(reason: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {reason}", err=True)
    sys.exit(code)


def cli_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn domain and configuration errors into a one-line reason and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (MedchatError, ConfigurationError) as exc:
            fail(str(exc) or exc.__class__.__name__)

    return wrapper


CLI_CONTEXT = audit.AuditContext(actor_role="cli", address="cli")


class ProgressBar:
    """Items done so far, as a bar on stderr, drawn from the first report on (when the total
    is known); called as ``progress(done, total)`` by batch jobs (rotation, retention)."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.enabled = enabled
        self.label = label
        self.bar: Any = None
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = click.progressbar(
                length=max(total, 1), label=self.label, show_pos=True, file=sys.stderr
            )
            self.bar.__enter__()
        self.bar.length = max(self.bar.length, total)
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self) -> None:
        """End the bar (again: nothing), e.g. before an error line follows it on stderr."""
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@click.group("db", help="Database schema.")
def db_group() -> None:
    pass


@db_group.command("upgrade", help="Apply the Alembic migrations (idempotent).")
@json_option
@with_appcontext
@cli_errors
def db_upgrade(as_json: bool) -> None:
    """Says what it applied, so a deploy log shows which migrations ran and from where."""
    from medchat.migrate import upgrade

    runtime = _runtime()
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
    from medchat.migrate import schema_state

    state = schema_state(_runtime().settings.database_url)
    if state.is_head:
        text = f"{state.revision} (head)"
    else:
        where = state.revision or "empty database"
        text = f"{where}; head is {state.head}: run 'medchat db upgrade'"
    payload = {"revision": state.revision, "head": state.head, "is_head": state.is_head}
    emit(as_json, payload, text)


@click.command("create-admin", help="Create the first admin and print its enrollment token.")
@click.option("--email", required=True)
@click.option("--first-name", required=True)
@click.option("--last-name", required=True)
@click.option(
    "--additional",
    is_flag=True,
    help="Create another admin although one exists (audited as an additional admin).",
)
@json_option
@with_appcontext
@cli_errors
def create_admin(
    email: str, first_name: str, last_name: str, additional: bool, as_json: bool
) -> None:
    from medchat.services.accounts import AccountService

    checked = _staff_fields(email=email, first_name=first_name, last_name=last_name)
    runtime = _runtime()
    with runtime.database.transaction() as session:
        audit.set_context(session, CLI_CONTEXT)
        account, token = AccountService(session, runtime).create_admin(
            **checked, additional=additional
        )
    emit(
        as_json,
        {"id": str(account.id), "enrollment_token": token},
        f"admin created: {account.id}\none-time enrollment token (shown once): {token}",
    )


def _staff_fields(**values: str) -> dict[str, str]:
    """The admin API's rules for a staff account (``StaffCreateSchema``: a real e-mail
    address, names of 1 to 100 characters), applied to the command's options; a failure exits
    1 naming the option."""
    import marshmallow as ma

    from medchat.schemas.admin import StaffCreateSchema

    try:
        loaded = StaffCreateSchema().load({**values, "role": "admin"})
    except ma.ValidationError as exc:
        messages = exc.normalized_messages()
        field = sorted(messages)[0]
        reasons = messages[field]
        reason = reasons[0] if isinstance(reasons, list) else str(reasons)
        fail(f"--{field.replace('_', '-')}: {reason}")
    return {name: loaded[name] for name in values}


@click.command("demo", help="Create demo accounts for local use and print how to sign in.")
@json_option
@with_appcontext
@cli_errors
def demo(as_json: bool) -> None:
    from medchat.demo import seed_demo

    runtime = _runtime()
    if runtime.settings.is_production:
        fail("demo accounts are refused in production")
    with runtime.database.transaction() as session:
        audit.set_context(session, CLI_CONTEXT)
        accounts = seed_demo(session, runtime)
    if as_json:
        emit(True, {"accounts": accounts}, "")
        return
    lines = ["Demo accounts (local use only):"]
    for item in accounts:
        line = f"  {item['role']:<11} {item['email']:<28} password: {item['password']}"
        if item.get("totp_secret"):
            line += f"  TOTP secret: {item['totp_secret']}"
        lines.append(line)
    base = runtime.settings.public_base_url
    lines += [
        "Staff sign in with a TOTP code: .venv/bin/python -m medchat.totp_code SECRET",
        f"Doctor's console: {base}/console/login (one question waiting, one answered)",
        f"Member API: POST {base}/api/v1/auth/token, then GET {base}/api/v1/conversations",
    ]
    click.echo("\n".join(lines))


def register_commands(app: Flask) -> None:
    from medchat.archive_commands import archive_group
    from medchat.audit_commands import audit_group
    from medchat.key_commands import keys_group
    from medchat.retention_commands import retention_group

    for command in (
        db_group,
        create_admin,
        audit_group,
        demo,
        keys_group,
        archive_group,
        retention_group,
    ):
        app.cli.add_command(command)


def _create_app() -> Flask:
    from medchat.app import create_app

    return create_app(check_pins=False)


def _version() -> str:
    """The installed distribution's version (what ``pip`` installed), not a constant that
    could drift from it; a bare checkout on ``PYTHONPATH`` has no metadata to read."""
    try:
        return metadata.version("medchat")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(context: click.Context, _: click.Parameter, value: bool) -> None:
    if value and not context.resilient_parsing:
        click.echo(f"medchat {_version()}")
        context.exit()


def build_cli() -> FlaskGroup:
    """The ``medchat`` command group, before any app is built (``--version`` needs none)."""
    group = FlaskGroup(create_app=_create_app, add_default_commands=True, add_version_option=False)
    group.params.append(
        click.Option(
            ["--version"],
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_print_version,
            help="Print the installed medchat version and exit.",
        )
    )
    # Usable before the app can start (production refuses to start without keys).
    from medchat.key_commands import keys_group

    group.add_command(keys_group)
    # ``archive verify-bundle`` and ``archive public-key`` need no database either.
    from medchat.archive_commands import archive_group

    group.add_command(archive_group)
    # ``audit anchor-public-key`` reads only the key file.
    from medchat.audit_commands import audit_group

    group.add_command(audit_group)
    return group


def main() -> None:
    """Entry point of the ``medchat`` console script."""
    try:
        build_cli().main(prog_name="medchat")
    except ConfigurationError as exc:
        fail(str(exc))
