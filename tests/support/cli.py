"""The ``medchat`` command group run in-process against a test's app.

The app factory does not register the commands (the group imports the app, never the other
way round), so tests invoke ``medchat.cli.build_cli()`` with the test's app as the one the
group loads, exactly as the console script does with its own.
"""

from __future__ import annotations

from typing import Any

from click.testing import Result
from flask import Flask
from flask.testing import FlaskCliRunner

from medchat.cli import build_cli


class MedchatCliRunner(FlaskCliRunner):
    def invoke(self, cli: Any = None, args: Any = None, **kwargs: Any) -> Result:  # type: ignore[override]
        return super().invoke(build_cli() if cli is None else cli, args, **kwargs)


def cli_runner(app: Flask) -> MedchatCliRunner:
    return MedchatCliRunner(app)
