"""Console answers to failures: HTML pages, and the login page when not signed in."""

from __future__ import annotations

from flask import Response, g, make_response, redirect, render_template, url_for

TITLES = {
    400: "The request could not be understood",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Not possible now",
    413: "The file is too large",
    415: "This type of file is not accepted",
    429: "Too many attempts",
    503: "Temporarily unavailable",
}


def render_console_error(status: int, code: str, message: str) -> Response:
    if status == 401:
        ended = 1 if g.get("console_session_ended") else None
        # The app's response as it is (``redirect`` is typed as werkzeug's, Flask's base).
        return make_response(redirect(url_for("console.login", ended=ended)))
    title = TITLES.get(status, "Something went wrong")
    response = make_response(
        render_template("console/error.html", title=title, message=message, code=code), status
    )
    return response
