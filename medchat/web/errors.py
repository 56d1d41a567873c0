"""The one place where failures become HTTP answers: ``{"error": {"code", "message"}}``.

Domain errors carry their code and status; schema errors become 422 with ``details``; a body
that is not JSON becomes 400; a key or ciphertext that fails its integrity check (a row altered
in the database) is 409 ``key_integrity_failed``, whether the service raised
``KeyIntegrityFailure`` or a ``DecryptionFailed`` reached here unhandled; werkzeug's
404/405/413/429 keep their status with our body; an outage of a dependency (the database, the
rate limiter's storage: ``medchat.storage.outages``; or this process's password work, full:
``access_control.password_work``) is 503 ``dependency_down`` with ``Retry-After``, logged in one
line and audited when the database is not the one down; any other exception is logged with its
trace and answered 500 with no trace. Refusals (403, 429) are audited after the request's own
work is rolled back. A 401 under ``/api`` names the
bearer scheme (``WWW-Authenticate``, RFC 6750), and every 429 and 503 says ``Retry-After``:
the OpenAPI document promises both (``medchat.api.openapi``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from flask.sansio.app import App
from flask_limiter import RequestLimit
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from access_control.crypto import DecryptionFailed, IntegrityCheckFailed
from medchat import audit
from medchat.errors import DependencyDown, KeyIntegrityFailure, MedchatError
from medchat.storage.outages import DATABASE, RETRY_AFTER_SECONDS, failed_dependency
from medchat.web.refusal_tally import EXTENSION as TALLY
from medchat.web.refusal_tally import RefusalTally

log = logging.getLogger("medchat.errors")

_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: DependencyDown.code,
}


#: ``app.extensions`` key of the error-page renderers by URL prefix (``register_error_pages``).
ERROR_PAGES = "medchat.error_pages"

PageRenderer = Callable[[int, str, str], Response]


def register_error_pages(app: App, prefix: str, render: PageRenderer) -> None:
    """Answer failures under ``prefix`` with ``render(status, code, message)`` instead of the
    JSON contract: how the console shows its own error pages without this layer importing it."""
    app.extensions.setdefault(ERROR_PAGES, {})[prefix] = render


def _page_renderer(path: str) -> PageRenderer | None:
    pages: dict[str, PageRenderer] = current_app.extensions.get(ERROR_PAGES, {})
    return next((render for prefix, render in pages.items() if path.startswith(prefix)), None)


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The error contract under ``/api``; a blueprint that registered error pages for its
    prefix (the console) renders the same failure as a page."""
    render_page = _page_renderer(request.path)
    if render_page is not None:
        response = render_page(status, code, message)
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if status == 401:
        response.headers["WWW-Authenticate"] = www_authenticate()
    if status in (429, 503) and "Retry-After" not in response.headers:
        # Every 429 and 503 says when to come back (the OpenAPI document requires it).
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def www_authenticate() -> str:
    """RFC 6750 section 3: a 401 names the scheme it wants; when a bearer token was sent
    and refused, it says so (``invalid_token``), so a client knows to refresh or sign in."""
    sent = request.headers.get("Authorization", "")
    if sent[:7].lower() == "bearer ":
        return 'Bearer realm="medchat", error="invalid_token"'
    return 'Bearer realm="medchat"'


def audit_refusal(status: int, code: str) -> None:
    """Audit a 403 or 429 after the request's rollback (also for console pages that answer
    a refusal with a form of their own)."""
    session = g.get("db")
    if session is None or status not in (403, 429):
        return
    audit.record_on_rollback(
        session,
        "request.denied",
        outcome="denied",
        details={
            "code": code,
            "status": status,
            "method": request.method,
            "endpoint": request.endpoint or request.path[:64],
        },
    )


def render_medchat_error(error: MedchatError) -> Response:
    audit_refusal(error.status, error.code)
    return error_response(error.status, error.code, error.message, error.details, error.headers)


def _webargs_details(error: HTTPException) -> Any:
    data = getattr(error, "data", None) or {}
    messages = data.get("messages") or data.get("errors")
    if isinstance(messages, dict) and len(messages) == 1:
        # {"json": {"field": [...]}} -> {"field": [...]}: the location is noise to clients.
        (only,) = messages.values()
        return only
    return messages


def render_http_exception(error: HTTPException) -> Response:
    # Flask wraps what an after-request step raised (the commit, the limiter's deduction) in
    # a 500 InternalServerError: an outage behind it is still a 503.
    dependency = failed_dependency(getattr(error, "original_exception", None))
    if dependency is not None:
        return render_dependency_down(dependency, error)
    if isinstance(error, CSRFError):
        audit_refusal(403, "csrf_failed")
        return error_response(403, "csrf_failed", "The form expired or did not come from here.")
    status = error.code or 500
    code = _HTTP_CODES.get(status, "error")
    details = None
    message = error.description or "The request could not be processed."
    headers: dict[str, str] = {}
    if status == 422:
        message = "Some fields are invalid."
        details = _webargs_details(error)
    elif status == 400:
        message = "The request body is not valid JSON." if _is_json_error(error) else message
    elif status == 405:
        message = "This method is not allowed here."
        allowed = error.get_response().headers.get("Allow")
        if allowed:
            headers["Allow"] = allowed
    elif status == 429:
        message = "Too many attempts; try again later."
        headers["Retry-After"] = str(_retry_after())
    elif status == 404:
        message = "Not found."
    audit_refusal(status, code)
    return error_response(status, code, message, details, headers)


def _is_json_error(error: HTTPException) -> bool:
    data = getattr(error, "data", None) or {}
    return "json" in (data.get("messages") or {}) or "JSON" in (error.description or "")


def _retry_after() -> int:
    current: RequestLimit | None = getattr(g, "view_rate_limit", None)
    if current is not None:
        try:
            return max(1, math.ceil(current.reset_at - time.time()))
        except AttributeError:
            pass
    return 60


def render_crypto_failure(error: Exception) -> Response:
    """A ciphertext or key that does not open where it must: altered data, 409, never a trace
    (and never a 500: the stored row is at fault, not the service)."""
    log.error("integrity failure on %s %s: %s", request.method, request.path, type(error).__name__)
    failure = KeyIntegrityFailure()
    return error_response(failure.status, failure.code, failure.message)


def render_dependency_down(
    dependency: str, error: BaseException | None = None, retry_after: str | None = None
) -> Response:
    """503 ``dependency_down`` with ``Retry-After`` and the dependency's name (never its URL).

    Logged in one line, without the trace (an outage is not a bug, and hundreds of traces
    would bury the first). Audited after the rollback when the database is up; when the
    database is the one down, the audit cannot be written and the log line is the record.
    Both as a tally per process, dependency and endpoint (``web.refusal_tally``): the first
    refusal of each second is written, with the number of refusals it stands for.
    """
    endpoint = request.endpoint or request.path[:64]
    tally: RefusalTally = current_app.extensions[TALLY]
    refused = tally.admit(dependency, endpoint)
    if refused is not None:  # the first of its window: logged and audited with the count
        log.warning(
            "dependency down (%s) on %s %s: %s (%d refused since the last line)",
            dependency,
            request.method,
            request.path,
            type(error).__name__ if error is not None else "-",
            refused,
        )
    session = g.get("db")
    if session is not None and dependency != DATABASE and refused is not None:
        audit.record_on_rollback(
            session,
            "request.dependency_down",
            outcome="failure",
            details={"dependency": dependency, "endpoint": endpoint, "refused": refused},
        )
    down = DependencyDown()
    return error_response(
        down.status,
        down.code,
        down.message,
        {"dependency": dependency},
        {"Retry-After": retry_after or str(RETRY_AFTER_SECONDS)},
    )


def render_medchat_dependency_down(error: DependencyDown) -> Response:
    """Raised by a service: the database, or a bound of this process (``password_work``,
    whose error carries its own, shorter ``Retry-After``)."""
    dependency = (error.details or {}).get("dependency", DATABASE)
    return render_dependency_down(dependency, error, error.headers.get("Retry-After"))


def render_unexpected(error: Exception) -> Response:
    dependency = failed_dependency(error)
    if dependency is not None:
        return render_dependency_down(dependency, error)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "internal_error", "Something went wrong on our side.")


def register_error_handlers(app: Flask) -> None:
    app.extensions[TALLY] = RefusalTally()
    app.register_error_handler(MedchatError, render_medchat_error)
    app.register_error_handler(DependencyDown, render_medchat_dependency_down)
    app.register_error_handler(DecryptionFailed, render_crypto_failure)
    app.register_error_handler(IntegrityCheckFailed, render_crypto_failure)
    app.register_error_handler(HTTPException, render_http_exception)
    app.register_error_handler(Exception, render_unexpected)
