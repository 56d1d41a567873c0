"""A body the server cannot read is a 400 ``bad_request`` on every route that takes one.

gunicorn's chunked reader raised ``InvalidChunkSize`` into the application for a chunk size
that is not hexadecimal: a 500 and a traceback in the log. Every route of the URL map that
takes a body (POST, PUT, PATCH, DELETE), signed in as a member (or not at all: the body is
read before or after the permission check, the answer is a 4xx either way), with a body whose
reading fails as gunicorn's does, and as a connection that ended early does.
"""

from __future__ import annotations

import io

import pytest
from gunicorn.http.errors import ChunkMissingTerminator, InvalidChunkSize, NoMoreData
from sqlalchemy import func, select

from medchat.models import Attachment
from medchat.web.request_body import UNREADABLE
from tests.support.accounts import bearer, login, make_member
from tests.support.messaging import asked, care_team, give_consent
from tests.support.routes import sample_path


class FailingStream(io.RawIOBase):
    """A body whose first read fails with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        raise self.error

    def readline(self, size: int | None = -1) -> bytes:
        raise self.error


CHUNKED = {"Transfer-Encoding": "chunked"}


def failing(error: Exception) -> dict:
    return {"wsgi.input": FailingStream(error), "wsgi.input_terminated": True}


@pytest.fixture
def app(make_app):
    """Errors handled as in production (not raised into the test)."""
    app = make_app()
    app.config.update(TESTING=False, PROPAGATE_EXCEPTIONS=False)
    return app


@pytest.mark.parametrize(
    "error",
    [InvalidChunkSize(b"zz"), ChunkMissingTerminator(b"xx"), NoMoreData(), OSError("reset")],
    ids=lambda e: type(e).__name__,
)
def test_a_body_that_cannot_be_read_is_a_400_everywhere(app, client, runtime, error):
    headers = bearer(login(client, runtime, make_member(runtime)))
    calls = [
        (method, sample_path(rule))
        for rule in app.url_map.iter_rules()
        for method in sorted(rule.methods & {"POST", "PUT", "PATCH", "DELETE"})
    ]
    assert len(calls) > 40
    wrong, read = [], 0
    for method, path in calls:
        response = client.open(
            path,
            method=method,
            headers={**headers, "Content-Type": "application/json", **CHUNKED},
            environ_overrides=failing(error),
        )
        if response.status_code >= 500:
            wrong.append((method, path, response.status_code, response.get_data()[:120]))
        elif path.startswith("/api") and response.status_code == 400:
            body = response.get_json()
            assert body["error"]["code"] == "bad_request", (path, body)
            read += body["error"]["message"] == UNREADABLE
    assert wrong == []
    assert read > 10  # the body was really read, and refused as unreadable, on many routes


def test_an_upload_that_cannot_be_read_is_a_400_and_stores_nothing(app, client, runtime):
    care_team(runtime)
    tokens = login(client, runtime, make_member(runtime))
    give_consent(client, tokens)
    conversation = asked(client, tokens, "Is this mole something to watch?")
    response = client.post(
        f"/api/v1/conversations/{conversation}/attachments",
        headers={**bearer(tokens), "Content-Type": "multipart/form-data; boundary=x", **CHUNKED},
        environ_overrides=failing(InvalidChunkSize(b"zz")),
    )
    assert response.status_code == 400, response.get_data()
    assert response.get_json()["error"]["message"] == UNREADABLE
    with runtime.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Attachment)) == 0
