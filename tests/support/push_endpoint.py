"""A real local HTTP endpoint for notifications: a push service and a webhook receiver.

It records every request (path, headers, body) and answers 201, or 503 while ``down`` is
set, so the worker's retries meet a real socket. ``delay`` holds each answer a moment (two
workers then overlap). A subscription made here has a real P-256 key and auth secret, so the
test can decrypt what arrives (RFC 8291, aes128gcm) as a browser would.
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Endpoint:
    server: ThreadingHTTPServer
    requests: list[Request] = field(default_factory=list)
    down: bool = False
    #: Answer 410 Gone, as a push service does for a subscription the browser dropped.
    gone: bool = False
    delay: float = 0.0

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def taken(self, path: str) -> list[Request]:
        """Requests to ``path`` that were answered 2xx (made while the endpoint was up)."""
        return [r for r in self.requests if r.path == path and r.headers.get("x-answer") == "201"]


@contextlib.contextmanager
def running() -> Iterator[Endpoint]:
    """A local push endpoint for the block's length (``start``, then shut down)."""
    endpoint = start()
    try:
        yield endpoint
    finally:
        endpoint.server.shutdown()
        endpoint.server.server_close()


def start() -> Endpoint:
    endpoint: Endpoint

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if endpoint.delay:
                time.sleep(endpoint.delay)
            status = 503 if endpoint.down else 410 if endpoint.gone else 201
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers["x-answer"] = str(status)
            endpoint.requests.append(Request(self.path, headers, body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    endpoint = Endpoint(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return endpoint


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class BrowserKeys:
    """What a browser keeps of a push subscription: its private key and auth secret."""

    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def as_json(self, endpoint: str) -> dict[str, Any]:
        point = self.private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"endpoint": endpoint, "keys": {"p256dh": _b64(point), "auth": _b64(self.auth)}}

    def decrypt(self, body: bytes) -> bytes:
        """RFC 8291 aes128gcm: the sender's key and salt are in the body's header."""
        return http_ece.decrypt(  # type: ignore[no-any-return]
            body, private_key=self.private, auth_secret=self.auth, version="aes128gcm"
        )
