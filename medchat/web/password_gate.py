"""A sign-in turned away before Flask handles it, while this process's password work is full.

Under a flood of sign-ins (issue 15; ``bench.flood``: 32 clients, each attempt a new unknown
address from a new source address) nearly every answer is 503 ``dependency_down`` for
``password_work``: the slots and the queue are taken (``access_control.password_work``). On
the full path that refusal costs what any request costs before its view runs: Flask's
dispatch, the rate limiter's checks (round trips to Redis in production), the JSON body's
parsing and validation, the request log line; about 0.6 ms of CPU in process. A flood answered
at once only asks again, so what a refusal costs is what the flood takes from the members
reading their messages beside it (bench/README.md, 2026-12-05: under the flood the readers
kept 27-28 % of their quiet throughput with the full path and 31-40 % with this one).

So ``RefuseWhilePasswordWorkFull`` wraps the whole WSGI application, outside every other
layer, and answers a POST for an endpoint marked ``password_work_first`` with the full path's
503, the same status, body and headers but for the rate limiter's for the address
(``tests/api/test_password_gate.py`` compares the two), when

- ``PasswordWork.full()`` says the slots and the queue are taken,
- the body is declared and small (``MAX_EARLY_BODY``; it is never read), and
- the refusal tally has written this window's entry for that endpoint already
  (``RefusalTally.counted``, which counts this refusal into the next entry): the first refusal
  of each window still takes the full path and is logged and audited, with the count.

Only views whose first piece of work is the gate may be marked (a sign-in takes it before the
account lookup; what runs before it, the rate limit, the failure budgets and the body's
validation, can only refuse): for them answering earlier tells a caller nothing the full path
would not, since the gate is the same for every caller and address. What does change, and
only while the gate is full: the refusal comes before the per-address rate limit, the failure
budgets and the body's validation (a malformed or locked sign-in gets this 503 instead of its
422 or 429; each of them changes nothing), and no request log line is written for it (the
tally's line for the window stands for them; ``medchat_refused_before_dispatch_total`` counts
them).

Not marked: the console's sign-in. Its answer is a page of the session (a CSRF token), which
must not be replayed to another client, and its CSRF check comes before the gate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from flask import Flask, Response
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import RequestRedirect

from access_control.password_work import DEPENDENCY, RETRY_AFTER_SECONDS
from medchat.errors import DependencyDown
from medchat.observability import metrics
from medchat.web.refusal_tally import EXTENSION as TALLY
from medchat.web.refusal_tally import RefusalTally
from medchat.web.request_log import REQUEST_ID_HEADER, request_id_from
from medchat.web.security_headers import headers_for

F = TypeVar("F", bound=Callable[..., Any])

#: The attribute ``password_work_first`` sets on a view (kept by ``functools.wraps``).
MARK = "medchat_password_work_first"
#: The 503's ``details``, as ``PasswordWorkBusy`` carries them on the full path.
_DETAILS = {"dependency": DEPENDENCY}
#: The largest body answered early. The early answer reads no body, and the server discards
#: an unread one by reading it before the connection's next request: a sign-in's is a few
#: hundred bytes, so anything declared larger, or not declared (chunked), takes the full
#: path, whose own limit (413) applies.
MAX_EARLY_BODY = 4096


def _small_body(environ: dict[str, Any]) -> bool:
    if environ.get("HTTP_TRANSFER_ENCODING"):
        return False
    declared = environ.get("CONTENT_LENGTH") or ""
    return declared.isdigit() and int(declared) <= MAX_EARLY_BODY


def password_work_first(view: F) -> F:
    """Mark a view whose first step is the process's password work gate (see the module)."""
    setattr(view, MARK, True)
    return view


def marked_endpoints(app: Flask) -> frozenset[str]:
    return frozenset(
        endpoint for endpoint, view in app.view_functions.items() if getattr(view, MARK, False)
    )


class RefuseWhilePasswordWorkFull:
    """WSGI middleware: the 503 of a full password work gate, before dispatch (see the module)."""

    def __init__(self, app: Flask) -> None:
        self.flask_app = app
        self.wsgi_app = app.wsgi_app
        runtime = app.extensions["medchat"]
        self.work = runtime.password_work
        self.cors_origins = runtime.settings.cors_origins
        self.tally: RefusalTally = app.extensions[TALLY]
        self.endpoints = marked_endpoints(app)
        down = DependencyDown()
        # Made as ``web.errors.error_response`` makes it (``jsonify``: the app's JSON provider).
        answer = cast(
            Response,
            app.json.response(
                {"error": {"code": down.code, "message": down.message, "details": _DETAILS}}
            ),
        )
        self.body = answer.get_data()
        self.content_type = answer.content_type or "application/json"
        self.status = f"{down.status} {HTTP_STATUS_CODES[down.status].upper()}"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") == "POST" and self.work.full() and _small_body(environ):
            endpoint = self._marked_endpoint(environ)
            if endpoint is not None and self.tally.counted(DEPENDENCY, endpoint):
                return self._refuse(environ, start_response)
        return self.wsgi_app(environ, start_response)

    def _marked_endpoint(self, environ: dict[str, Any]) -> str | None:
        try:
            endpoint, _ = self.flask_app.url_map.bind_to_environ(environ).match()
        except (HTTPException, RequestRedirect):
            return None
        return endpoint if endpoint in self.endpoints else None

    def _refuse(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        metrics.REFUSED_BEFORE_DISPATCH.labels(dependency=DEPENDENCY).inc()
        headers = [
            ("Content-Type", self.content_type),
            ("Content-Length", str(len(self.body))),
            ("Retry-After", str(RETRY_AFTER_SECONDS)),
            *headers_for(
                environ.get("PATH_INFO", ""), environ.get("HTTP_ORIGIN"), self.cors_origins
            ),
            (REQUEST_ID_HEADER, request_id_from(environ.get("HTTP_X_REQUEST_ID"))),
        ]
        start_response(self.status, headers)
        return [self.body]


def init_app(app: Flask) -> None:
    """Last in ``create_app``: outside every other layer, after every view is registered."""
    app.wsgi_app = RefuseWhilePasswordWorkFull(app)  # type: ignore[method-assign]
