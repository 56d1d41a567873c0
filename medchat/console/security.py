"""The console refuses cross-site requests before any form is processed.

SameSite=Strict keeps the session cookie off cross-site requests; on top of it every state
changing request must carry a valid CSRF token (Flask-WTF) and must not come from another
site (``Sec-Fetch-Site`` and ``Origin``, which browsers set and pages cannot forge).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, request
from flask_wtf.csrf import CSRFProtect

from medchat.errors import Forbidden

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CrossSiteRequest(Forbidden):
    code, message = "cross_site_request", "Requests from other sites are refused."


def _same_origin(origin: str) -> bool:
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" == request.host_url.rstrip("/")


def init_app(app: Flask) -> None:
    csrf = CSRFProtect(app)

    @app.before_request
    def _refuse_cross_site() -> None:
        if not request.path.startswith("/console") or request.method in SAFE_METHODS:
            return
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            raise CrossSiteRequest
        # Pages are served with "Referrer-Policy: no-referrer", under which browsers send
        # "Origin: null" even for same-origin posts; Sec-Fetch-Site above is the reliable
        # signal then, and the CSRF token below is required in every case.
        origin = request.headers.get("Origin")
        if origin not in (None, "null") and not _same_origin(origin):
            raise CrossSiteRequest
        csrf.protect()
