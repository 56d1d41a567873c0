"""Uploaded files stay in memory, and each one is cut off while it streams in.

Attachments are medical content: their plaintext must never reach a disk, where it would
outlive the request in a swap of temporary files, a backup or a stolen volume (SECURITY-MODEL
"Key hierarchy": a copy of the server's storage reveals nothing). werkzeug's default stream
factory (``werkzeug.formparser.default_stream_factory``) spools every multipart file larger
than 500 KB to a ``SpooledTemporaryFile`` on disk; ``InMemoryUploadRequest`` hands the parser
an in-memory buffer instead.

Memory stays bounded, in two layers:

- ``MAX_CONTENT_LENGTH`` (the app factory sets ``max_attachment_bytes`` + 64 KiB for the
  multipart framing) makes werkzeug refuse a declared ``Content-Length`` above it before
  reading anything, and stop reading a body without one (chunked, when the server sets
  ``wsgi.input_terminated`` as gunicorn does) the moment it passes the limit;
- each file's buffer refuses to grow past ``max_attachment_bytes``, so a file is refused (413)
  as its bytes cross the limit, even when the body as a whole fits.

The reverse proxy must not spool either: ``deploy/nginx`` sets ``proxy_request_buffering off``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from medchat.web.context import runtime

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class BoundedMemoryFile(io.BytesIO):
    """A writable in-memory file that raises ``RequestEntityTooLarge`` past ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def write(self, data: ReadableBuffer, /) -> int:
        # The multipart parser only appends, so the position is the size written so far.
        if self.tell() + memoryview(data).nbytes > self.limit:
            raise RequestEntityTooLarge(f"A file may hold at most {self.limit} bytes.")
        return super().write(data)

    def writelines(self, lines: Iterable[ReadableBuffer], /) -> None:
        # BytesIO.writelines would bypass the check above.
        for line in lines:
            self.write(line)


class InMemoryUploadRequest(Request):
    """Flask's request, with multipart files kept in bounded memory instead of temp files."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return BoundedMemoryFile(runtime().settings.max_attachment_bytes)
