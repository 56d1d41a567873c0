"""One JSON object per log line, on stderr: what an operator's log store can filter and count.

structlog renders every record, the service's own and the libraries' alike (``logging``
records go through ``structlog.stdlib.ProcessorFormatter``), as one line of JSON with
``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``event``, plus the ``request_id`` of the
request it was written in (bound by ``medchat.web.request_log``). The request line
itself adds route, method, status, duration and the actor's role.

What never reaches a line is decided where lines are written, not here: the request line
names the route's rule (``/api/v1/conversations/<uuid:conversation_id>``), never the path or
the query string; the service's messages carry ids and codes, never content, names or e-mail
addresses; SQLAlchemy's engines hide statement parameters (``medchat.db``).
``tests/security/test_logs_hold_no_personal_data.py`` runs a whole exchange with canaries and
searches every line.

``configure_logging`` is called by the processes that serve (``wsgi.py``); tests attach
``json_formatter()`` to a handler of their own. gunicorn's own lines (its master and
workers' start and stop) are JSON too, by ``deploy/gunicorn.conf.py``.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

import structlog

#: What every line gets, whether written through structlog or ``logging``.
_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
]


#: Read first on every line, whatever added them last.
_FIRST = ("time", "level", "logger", "event", "request_id")


def _first_fields_first(_logger: Any, _name: str, event_dict: Any) -> Any:
    return {**{key: event_dict[key] for key in _FIRST if key in event_dict}, **event_dict}


def json_formatter() -> logging.Formatter:
    """A ``logging`` formatter that writes each record as one JSON object."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED_PROCESSORS,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _first_fields_first,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
    )


def get_logger(name: str) -> Any:
    """A structlog logger writing through ``logging`` (so handlers, levels and pytest's
    ``caplog`` see it) without configuring structlog for the whole process."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[
            # Nothing more is done for a line nobody will write.
            structlog.stdlib.filter_by_level,
            *_SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )


class _StandardError(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the write."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


_MARK = "_medchat_json"


def configure_logging(stream: IO[str] | None = None, level: int = logging.INFO) -> logging.Handler:
    """Send every record of level ``level`` or above from ``medchat`` and ``access_control``,
    and warnings from any library, to ``stream`` (stderr) as JSON. Calling it again replaces
    the handler it added, never adds a second one."""
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StandardError()
    )
    handler.setFormatter(json_formatter())
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    for name in ("medchat", "access_control"):
        logging.getLogger(name).setLevel(level)
    return handler
