"""A worker that cannot load its keys waits, answering 503, instead of taking the server down.

gunicorn's master halts the whole server when a worker exits with its boot-error code, which
is what a worker whose app failed to build used to do: one worker recycled (``max_requests``,
a crash, a reload) while the key files were unreadable stopped every worker, and the server
stayed down after the files were readable again (issue 13 item 6). The master checks the keys
before it forks (``medchat keys check``, run by ``on_starting`` in ``deploy/gunicorn.conf.py``),
so a start with bad keys fails at once; what fails later is temporary by nature (files moved,
permissions changed, a copy half done), and the worker that meets it:

- stays up and answers every request 503 ``dependency_down`` (``details.dependency``
  ``key_files``) with ``Retry-After``, in the error envelope of ``medchat.web.errors``;
  ``/readyz`` says not ready, so a balancer sends the traffic to other hosts;
- tries to build the app again on a request, at most once every ``retry_seconds``, and serves
  normally from the first success: the server heals by itself once the files are back.

Only ``ConfigurationError`` is waited out: it is what a key file that cannot be read, is
missing, or no longer matches its pin raises (``access_control.key_directory``,
``medchat.archive.signing``, the role-key pins). The settings themselves cannot change under
a running master (its workers inherit its environment), and the master checked them first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response

from medchat.errors import ConfigurationError, DependencyDown
from medchat.storage.outages import KEY_FILES, RETRY_AFTER_SECONDS
from medchat.web.errors import error_response
from medchat.web.security_headers import STATIC_HEADERS

log = logging.getLogger("medchat.startup")

#: Seconds between two attempts to build the app while the keys cannot be loaded.
RETRY_SECONDS = 5.0
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _unavailable(path: str) -> Response:
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if path == "readyz":
        return error_response(
            503,
            DependencyDown.code,
            f"Not ready: {KEY_FILES} unavailable.",
            {"failed": [KEY_FILES]},
            retry,
        )
    down = DependencyDown()
    return error_response(down.status, down.code, down.message, {"dependency": KEY_FILES}, retry)


def _standby_app() -> Flask:
    """Answers everything 503 ``key_files``; ``/readyz`` in its own words, as the app would."""
    app = Flask("medchat.standby")
    app.add_url_rule("/", "root", lambda: _unavailable(""), methods=_METHODS)
    app.add_url_rule("/<path:path>", "any", _unavailable, methods=_METHODS)
    # Whatever else werkzeug would refuse before the view (a method it does not route): the same.
    app.register_error_handler(Exception, lambda _: _unavailable(""))

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.extend(STATIC_HEADERS.items())
        response.headers["Cache-Control"] = "no-store"
        return response

    return app


class WaitForKeys:
    """The WSGI app of a worker: the built medchat app, or the standby until it builds."""

    def __init__(
        self,
        factory: Callable[[], Flask],
        *,
        retry_seconds: float = RETRY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self._retry_seconds = retry_seconds
        self._monotonic = monotonic
        self._app: Flask | None = None
        self._next_attempt = 0.0
        self._lock = threading.Lock()
        self._standby = _standby_app()
        self._attempt()

    @property
    def app(self) -> Flask | None:
        """The medchat app once built (None while the worker waits for its keys)."""
        return self._app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        app = self._app or self._attempt()
        return (app or self._standby)(environ, start_response)

    def _attempt(self) -> Flask | None:
        """Build the app if the last attempt is old enough and no other thread is at it."""
        if self._monotonic() < self._next_attempt or not self._lock.acquire(blocking=False):
            return self._app
        try:
            if self._app is None:
                self._build()
        finally:
            self._lock.release()
        return self._app

    def _build(self) -> None:
        waited = self._next_attempt > 0
        try:
            self._app = self._factory()
        except ConfigurationError as exc:
            self._next_attempt = self._monotonic() + self._retry_seconds
            log.error(
                "cannot serve: %s; answering 503 and trying again every %.0f s",
                exc,
                self._retry_seconds,
            )
            return
        if waited:
            log.warning("the server keys load again: serving")
