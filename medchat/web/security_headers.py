"""Transport hygiene: staff-network refusal, security headers, no caching, CORS off by default.

SECURITY-MODEL "Transport and headers": HSTS, a strict CSP (no inline script, no other
origin), nosniff, no referrer, frame-ancestors 'none', and ``Cache-Control: no-store`` on
every API answer and console page (they carry personal or medical data). Cross-origin access
is refused unless ``MEDCHAT_CORS_ORIGINS`` names the origin.
"""

from __future__ import annotations

from collections.abc import Sequence

from flask import Flask, Response, request

from access_control.networks import is_staff_path, require_allowed_network
from medchat.web.context import runtime

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
STATIC_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


def _refuse_outside_staff_networks() -> None:
    if is_staff_path(request.path):
        require_allowed_network(request.remote_addr, runtime().settings.staff_networks)


#: Lower-cased names, for one pass over the response's headers instead of one per name.
_STATIC_NAMES = frozenset(name.lower() for name in STATIC_HEADERS)


#: On every answer under these prefixes (personal or medical data: never cached).
NO_STORE_PREFIXES = ("/api/", "/console")
NO_STORE_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: With an allowed ``Origin`` (``MEDCHAT_CORS_ORIGINS``), besides the origin itself.
CORS_HEADERS = {
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE",
    "Vary": "Origin",
}


def _add_headers(response: Response) -> Response:
    # A view that set its own value of one of these keeps it; every other one is added.
    present = {name.lower() for name, _ in response.headers} & _STATIC_NAMES
    response.headers.extend(
        (name, value) for name, value in STATIC_HEADERS.items() if name.lower() not in present
    )
    if request.path.startswith(NO_STORE_PREFIXES):
        for name, value in NO_STORE_HEADERS.items():
            response.headers[name] = value
    origin = request.headers.get("Origin")
    if origin and origin in runtime().settings.cors_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        for name, value in CORS_HEADERS.items():
            response.headers[name] = value
    return response


def headers_for(
    path: str, origin: str | None, cors_origins: Sequence[str]
) -> list[tuple[str, str]]:
    """What ``_add_headers`` adds to an answer of its own, for the answers made before Flask
    handles a request (``web.password_gate``)."""
    headers = list(STATIC_HEADERS.items())
    if path.startswith(NO_STORE_PREFIXES):
        headers += NO_STORE_HEADERS.items()
    if origin and origin in cors_origins:
        headers += [("Access-Control-Allow-Origin", origin), *CORS_HEADERS.items()]
    return headers


def init_app(app: Flask) -> None:
    app.before_request(_refuse_outside_staff_networks)
    app.after_request(_add_headers)
