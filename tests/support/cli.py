"""The ``medchat`` command group run in-process against a test's app.

The app factory does not register the commands (the group imports the app, never the other
way round), so tests invoke ``medchat.cli.build_cli()`` with the test's app as the one the
group loads, exactly as the console script does with its own.
"""

from __future__ import annotations

from typing import Any

from click.testing import Result
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskCliRunner

from medchat.cli import build_cli
from medchat.cli.db import SETTINGS


class MedchatCliRunner(FlaskCliRunner):
    def invoke(self, cli: Any = None, args: Any = None, **kwargs: Any) -> Result:  # type: ignore[override]
        if "obj" not in kwargs:
            # The commands that build no app (``db``) read the test app's settings.
            info = ScriptInfo(create_app=lambda: self.app)
            info.data[SETTINGS] = self.app.extensions["medchat"].settings
            kwargs["obj"] = info
        return super().invoke(build_cli() if cli is None else cli, args, **kwargs)


def cli_runner(app: Flask) -> MedchatCliRunner:
    return MedchatCliRunner(app)
