"""Attachment uploads are bounded while they stream and never spooled to disk."""

from __future__ import annotations

import io
import json
import tempfile
from typing import Any

import pytest
import werkzeug.formparser
from flask import Flask, request
from werkzeug.datastructures import FileStorage
from werkzeug.test import EnvironBuilder, encode_multipart, run_wsgi_app

from medchat.web.uploads import BoundedMemoryFile
from tests.support import sample_files as files
from tests.support.attachments import (
    BASELINE,
    MEMBER_DOWNLOAD,
    MEMBER_UPLOAD,
    Clinic,
    build_clinic,
    post_file,
    stored,
)
from tests.support.responses import error_code


@pytest.fixture
def clinic(app: Flask) -> Clinic:
    return build_clinic(app)


@pytest.fixture
def small_clinic(make_app: Any) -> Clinic:
    """Attachments limited to 1 KiB (bodies to 1 KiB + 64 KiB of multipart framing)."""
    return build_clinic(make_app(max_attachment_bytes=1024))


class CountingStream(io.BytesIO):
    """A request body that remembers how much of it the server read."""

    consumed = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.consumed += len(data)
        return data

    def readinto(self, buffer: Any, /) -> int:
        count = super().readinto(buffer)
        self.consumed += count
        return count


def run_chunked(clinic: Clinic, data: bytes, filename: str) -> tuple[int, dict, CountingStream]:
    """POST a multipart body with no Content-Length, as a server passes a chunked request."""
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(data), filename)})
    stream = CountingStream(body)
    environ = EnvironBuilder(
        path=MEMBER_UPLOAD.format(clinic.conversation_id),
        method="POST",
        headers={**clinic.member_auth, "Transfer-Encoding": "chunked"},
        input_stream=stream,
        content_type=f'multipart/form-data; boundary="{boundary}"',
    ).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True  # what gunicorn sets for a chunked body
    app_iter, status, _headers = run_wsgi_app(clinic.app, environ, buffered=True)
    return int(status.split()[0]), json.loads(b"".join(app_iter)), stream


def test_a_file_over_the_limit_is_refused_and_nothing_is_stored(small_clinic):
    at_limit = files.png(padding=1024 - len(files.png()) - 20)
    assert len(at_limit) == 1024
    over = files.png(padding=4000)  # the body fits MAX_CONTENT_LENGTH; the file does not
    response = post_file(small_clinic, over, "big.png")
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"
    # Refused by the upload buffer as the bytes streamed in, not after they were all read.
    assert "at most 1024 bytes" in response.get_json()["error"]["message"]
    assert stored(small_clinic.runtime) == BASELINE
    assert post_file(small_clinic, at_limit, "fits.png").status_code == 201


def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(small_clinic):
    part = FileStorage(io.BytesIO(files.png(padding=100_000)), "x.png")
    boundary, body = encode_multipart({"file": part})
    stream = CountingStream(body)
    response = small_clinic.client.post(
        MEMBER_UPLOAD.format(small_clinic.conversation_id),
        headers=small_clinic.member_auth,
        input_stream=stream,
        content_type=f'multipart/form-data; boundary="{boundary}"',
    )
    assert (response.status_code, error_code(response)) == (413, "payload_too_large")
    assert stream.consumed == 0
    assert stored(small_clinic.runtime) == BASELINE


def test_a_chunked_body_over_the_limit_is_refused_while_streaming(small_clinic):
    status, body, stream = run_chunked(small_clinic, files.png(padding=1_000_000), "x.png")
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    # Reading stopped at the limit plus at most one parser chunk, not at the end.
    assert stream.consumed <= 1024 + 64 * 1024 + 64 * 1024 < len(stream.getvalue())
    assert stored(small_clinic.runtime) == BASELINE


def test_a_chunked_body_within_the_limit_is_accepted(small_clinic):
    status, body, _ = run_chunked(small_clinic, files.png(), "small.png")
    assert status == 201, body
    assert body["content_type"] == "image/png"


def test_uploads_stay_in_memory_and_never_spool_to_disk(clinic, monkeypatch):
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("upload plaintext was about to be written to a temporary file")

    for module in (werkzeug.formparser, tempfile):
        for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)
    # Above werkzeug's 500 KB spooling threshold: the default factory would go to disk.
    data = files.png(padding=700_000)
    response = post_file(clinic, data, "large-scan.png")
    assert response.status_code == 201, response.get_json()
    download = clinic.client.get(
        MEMBER_DOWNLOAD.format(response.get_json()["id"]), headers=clinic.member_auth
    )
    assert download.data == files.as_stored(data)  # the padding was a text chunk: removed
    with clinic.app.test_request_context(
        "/", method="POST", data={"file": (io.BytesIO(data), "x.png")}
    ):
        assert isinstance(request.files["file"].stream, BoundedMemoryFile)
