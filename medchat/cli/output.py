"""What every ``medchat`` command shares: ``--json``, one-line failures, the audit context
of the command line, the service context of the loaded app, and a progress bar.

Every command takes ``--json`` and then prints one JSON object on stdout; without it, text for
people. Success exits 0; a failure exits non-zero with a one-line reason on stderr
(API.md "Bootstrap and operations").
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click
from flask import current_app

from medchat import audit
from medchat.errors import ConfigurationError, MedchatError
from medchat.services.context import ServiceContext

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
#: For a resumable command that works in batches: stop early, run again to go on.
max_batches_option = click.option(
    "--max-batches", type=click.IntRange(1), default=None, help="Stop after this many batches."
)


def batch_option(default: int, most: int, what: str) -> Any:
    """``--batch``: how many ``what`` one transaction handles (1 to ``most``)."""
    return click.option(
        "--batch",
        type=click.IntRange(1, most),
        default=default,
        show_default=True,
        help=f"{what} per transaction.",
    )


def loaded_runtime() -> ServiceContext:
    """The service context of the app the command group loaded (``with_appcontext``)."""
    context: ServiceContext = current_app.extensions["medchat"]  # set by create_app
    return context


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
