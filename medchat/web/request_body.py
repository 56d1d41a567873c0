"""A request body that cannot be read is the client's error: 400, never a 500.

The body is read from ``wsgi.input`` wherever a view, a schema or the form parser first needs
it. What the server reads it through (gunicorn's chunked reader, a socket) raises its own
exceptions for a malformed chunk, a chunk size that is not hexadecimal or a connection that
ended early (``InvalidChunkSize``, ``ChunkMissingTerminator``, ``NoMoreData``); none of them is
an application error, yet each reached the last error handler as a 500 with a traceback in
the log. The stream is wrapped once, outside Flask, so every reader of the body meets the same
rule: any failure to read becomes ``BadRequest`` (400 ``bad_request``), answered as JSON by
the API's error handlers. Nothing was done with a body that could not be read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from medchat.errors import BadRequest, MedchatError

UNREADABLE = "The request body could not be read (a malformed chunk, or it ended early)."


class ReadableBody:
    """``wsgi.input`` whose read errors are raised as ``BadRequest``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _read(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except MedchatError:
            raise
        except Exception as exc:
            raise BadRequest(UNREADABLE) from exc

    def read(self, *args: Any) -> bytes:
        data: bytes = self._read(self._stream.read, *args)
        return data

    def readline(self, *args: Any) -> bytes:
        line: bytes = self._read(self._stream.readline, *args)
        return line

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._read(self._stream.readlines, *args)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


class ReadableBodies:
    """WSGI middleware: every request's ``wsgi.input`` wrapped in ``ReadableBody``."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        stream = environ.get("wsgi.input")
        if stream is not None:
            environ["wsgi.input"] = ReadableBody(stream)
        return self.wsgi_app(environ, start_response)
