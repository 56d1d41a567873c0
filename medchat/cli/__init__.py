"""The ``medchat`` command group: one module per group, output conventions in ``output``.

``medchat`` (the console script) and ``python -m medchat`` both run ``main``. The group builds
the app only when a command needs it (``with_appcontext``): ``--version``, ``db upgrade`` and
``db current`` (no server key: a schema migration runs before they exist), ``keys
server-init`` and ``keys check``, ``archive verify-bundle``/``public-key`` and ``audit
anchor-public-key`` work before the service can start. The app factory never imports this
package, so there is no circle between them.
"""

from __future__ import annotations

from importlib import metadata

import click
from flask import Flask
from flask.cli import FlaskGroup

from medchat.app import create_app
from medchat.cli.admin import create_admin
from medchat.cli.archive import archive_group
from medchat.cli.audit import audit_group
from medchat.cli.backup import backup_group
from medchat.cli.db import db_group
from medchat.cli.demo import demo
from medchat.cli.dpo import dpo_group
from medchat.cli.keys import keys_group
from medchat.cli.notify import notify_group
from medchat.cli.output import fail
from medchat.cli.retention import retention_group
from medchat.errors import ConfigurationError

COMMANDS = (
    db_group,
    create_admin,
    audit_group,
    demo,
    keys_group,
    archive_group,
    retention_group,
    notify_group,
    dpo_group,
    backup_group,
)


def _create_app() -> Flask:
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
    for command in COMMANDS:
        group.add_command(command)
    return group


def main() -> None:
    """Entry point of the ``medchat`` console script."""
    try:
        build_cli().main(prog_name="medchat")
    except ConfigurationError as exc:
        fail(str(exc))
