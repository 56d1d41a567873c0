"""Each request: an id, one JSON log line and its latency in the metrics (issue 13 items 10, 11).

``RequestObserver`` wraps the WSGI application, so it sees every answer, the error handlers'
included, with its final status:

- **Request id.** A client's (or nginx's) ``X-Request-ID`` is kept when it is sane
  (``REQUEST_ID_PATTERN``: 1 to 64 letters, digits, ``.``, ``_``, ``-``; so never an e-mail
  address, a space or a control character, and nothing that could forge a log line); any
  other value, or none, is replaced by a random one. It is returned in ``X-Request-ID`` and
  bound to every log line written while the request runs.
- **The request line** (logger ``medchat.requests``): ``request_id``, ``method``, ``route``
  (the URL rule, ``/api/v1/conversations/<uuid:conversation_id>``, never the path, whose ids
  would tie lines to a member, nor the query string), ``status``, ``duration_ms`` and
  ``actor_role`` (``anonymous`` when nobody signed in). Written when the application returns
  its answer; the time to send a body to a slow client is not counted.
- **Latency** in ``medchat_http_request_duration_seconds`` by route, method and status.

The role is noted when sign-in loads the caller (flask-login's ``user_loaded_from_request``,
for bearer tokens and console sessions alike), while its rows are fresh: read later, after the
commit, an account row would have to be loaded again, with no session left to do it. No caller
loaded (no view asked who it was) is ``anonymous``: the log line never costs a database round.
The route is noted when the request context ends, matched or not.
A request that matches no route is ``unmatched``; a method outside HTTP's usual ones is
``other``, so a client cannot grow the number of series.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from flask import Flask, request
from flask_login import user_loaded_from_request

from medchat.observability import metrics
from medchat.observability.logs import get_logger

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_ROUTE = "medchat.route"
_ROLE = "medchat.actor_role"

log = get_logger("medchat.requests")


def request_id_from(header: str | None) -> str:
    """The client's id when it is sane, else a new random one."""
    if header is not None and REQUEST_ID_PATTERN.fullmatch(header):
        return header
    return uuid.uuid4().hex


def _note_role(_app: Flask, user: Any = None, **_: Any) -> None:
    role = getattr(user, "role", None)
    if role:
        request.environ[_ROLE] = str(role)


def _note_route(_error: BaseException | None) -> None:
    rule = request.url_rule
    request.environ[_ROUTE] = rule.rule if rule is not None else UNMATCHED


class RequestObserver:
    """WSGI middleware: request id, request log line, latency and in-flight metrics."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ["HTTP_X_REQUEST_ID"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status: list[int] = []

        def start(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[:] = [int(code.split(" ", 1)[0])]
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(code, headers, exc_info)

        began = time.perf_counter()
        metrics.REQUESTS_IN_FLIGHT.inc()
        try:
            return self.app(environ, start)
        finally:
            metrics.REQUESTS_IN_FLIGHT.dec()
            self._record(environ, status[0] if status else 500, time.perf_counter() - began)
            structlog.contextvars.clear_contextvars()

    @staticmethod
    def _record(environ: dict[str, Any], status: int, seconds: float) -> None:
        method = environ.get("REQUEST_METHOD", "")
        route = environ.get(_ROUTE, UNMATCHED)
        metrics.REQUEST_SECONDS.labels(
            route=route, method=method if method in METHODS else "other", status=str(status)
        ).observe(seconds)
        (log.error if status >= 500 else log.info)(
            "request",
            method=method if method in METHODS else "other",
            route=route,
            status=status,
            duration_ms=round(seconds * 1000, 3),
            actor_role=environ.get(_ROLE, "anonymous"),
        )


def init_app(app: Flask) -> None:
    user_loaded_from_request.connect(_note_role, app)
    app.teardown_request(_note_route)
    app.wsgi_app = RequestObserver(app.wsgi_app)  # type: ignore[method-assign]
