"""Every log line the process writes during a test, as the service writes them (JSON).

``captured_lines`` attaches a handler with the service's own formatter
(``medchat.observability.logs.json_formatter``) to the root logger and opens every logger to
DEBUG, SQLAlchemy's statement echo included, so a test sees more than production writes by
default: what an operator could turn on while debugging must hold no secret either.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from medchat.observability.logs import json_formatter


class Lines:
    def __init__(self, buffer: io.StringIO) -> None:
        self._buffer = buffer

    @property
    def text(self) -> str:
        return self._buffer.getvalue()

    def records(self) -> list[dict[str, Any]]:
        """Each line parsed; a line that is not one JSON object fails the test."""
        parsed = []
        for line in self.text.splitlines():
            record = json.loads(line)
            assert isinstance(record, dict), line
            parsed.append(record)
        return parsed

    def requests(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("logger") == "medchat.requests"]


@contextmanager
def captured_lines(level: int = logging.DEBUG) -> Iterator[Lines]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    # Every logger that has a level of its own (medchat's, SQLAlchemy's) is opened too.
    named = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    saved = [(logger, logger.level) for logger in [root, *named]]
    root.addHandler(handler)
    for logger, _ in saved:
        logger.setLevel(level)
    try:
        yield Lines(buffer)
    finally:
        root.removeHandler(handler)
        for logger, previous in saved:
            logger.setLevel(previous)
