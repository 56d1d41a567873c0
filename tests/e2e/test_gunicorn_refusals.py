"""What gunicorn answers itself, before the application: the API's JSON error body.

A request line or a header over the limits of ``deploy/gunicorn.conf.py`` never reaches the
application; gunicorn's stock answer is an HTML page, which API.md "Conventions" rules out on
``/api``. The deployment's worker answers 414 and 431 (and a malformed header's 400) as
``{"error": {"code", "message"}}`` instead, and every other request gunicorn cannot parse
(400) or whose transfer coding it does not support (501). Served for real, with the
deployment's config.
"""

from __future__ import annotations

import json
import socket

import pytest


def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def _assert_contract(answer: tuple[int, dict[str, str], bytes], status: int, code: str) -> None:
    got, headers, body = answer
    assert got == status, body
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    error = json.loads(body)["error"]
    assert error["code"] == code
    assert error["message"]
    assert b"<html" not in body


def test_a_url_over_the_limit_is_a_json_414(served):
    port, _ = served
    path = "/api/v1/conversations?cursor=" + "1" * 9000
    answer = _raw(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    _assert_contract(answer, 414, "uri_too_long")


def test_a_header_over_the_limit_is_a_json_431(served):
    port, _ = served
    request = b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    _assert_contract(_raw(port, request), 431, "headers_too_large")


def test_too_many_headers_are_a_json_431(served):
    port, _ = served
    many = b"".join(b"X-H%d: 1\r\n" % n for n in range(120))
    request = b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"
    _assert_contract(_raw(port, request), 431, "headers_too_large")


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /api/v1/\xff HTTP/1.1",  # a raw 8-bit byte in the path
        b"get /api/v1/me HTTP/1.1",  # a method gunicorn refuses
        b"GET /api/v1/me HTTP/9.9",
        b"GET  HTTP/1.1",
        b"\x16\x03\x01\x02\x00\x01",  # TLS spoken to the plain port
    ],
)
def test_a_malformed_request_is_a_json_400(served, request_line):
    port, _ = served
    _assert_contract(_raw(port, request_line + b"\r\nHost: x\r\n\r\n"), 400, "bad_request")


def test_an_unsupported_transfer_coding_is_a_json_501(served):
    port, _ = served
    request = b"POST /api/v1/probe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: br, chunked\r\n\r\n"
    _assert_contract(_raw(port, request), 501, "not_implemented")


def test_requests_within_the_limits_still_reach_the_application(served):
    port, _ = served
    status, _, _ = _raw(port, b"GET /api/v1/probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200
