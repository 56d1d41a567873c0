"""One transaction per request: commit when the answer is a success, undo everything else.

A response below 400 commits; any 4xx/5xx rolls back and then runs the session's rollback
actions (audit of the refusal) in a fresh transaction. If the commit itself fails the client gets
an error and nothing is kept: a success is only acknowledged once it is durable. The error is
503 when the database went away or turned read-only (``medchat.storage.outages``), 500 otherwise
(the audit append refused).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, request

from medchat import audit
from medchat.storage.outages import failed_dependency
from medchat.web.context import runtime
from medchat.web.errors import error_response, render_dependency_down

log = logging.getLogger("medchat.transaction")


def _open() -> None:
    session = runtime().database.session()
    audit.set_context(session, audit.AuditContext(address=request.remote_addr))
    g.db = session


def _finish(response: Response) -> Response:
    session = g.pop("db", None)
    if session is None:
        return response
    database = runtime().database
    try:
        if response.status_code < 400:
            session.commit()
        else:
            database.rollback(session)
    except Exception as error:
        dependency = failed_dependency(error)
        if dependency is None:
            log.exception("could not finish the transaction of %s %s", request.method, request.path)
        try:
            session.rollback()
        finally:
            session.close()
        if dependency is not None:
            # The database went away (or turned read-only) between the work and its commit:
            # nothing was kept, and the client may retry (503, never a 500).
            return render_dependency_down(dependency, error)
        return error_response(500, "internal_error", "The change could not be saved.")
    session.close()
    return response


def _teardown(_exc: BaseException | None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.rollback()
        session.close()


def init_app(app: Flask) -> None:
    app.before_request(_open)
    app.after_request(_finish)
    app.teardown_request(_teardown)
