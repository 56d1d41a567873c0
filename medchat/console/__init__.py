"""The clinician console: server-rendered pages under ``/console``, no JavaScript needed.

It calls the same services as the clinician API, shows the same minimal patient view and
audits the same reads. Sessions live in a cookie of their own (``console_session``), every
form carries a CSRF token, cross-site posts are refused, and pages load nothing from another
origin (the CSP forbids it).
"""

from __future__ import annotations

from flask import Blueprint

from medchat.console.errors import render_console_error
from medchat.web.errors import register_error_pages

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
bp.record_once(lambda state: register_error_pages(state.app, "/console", render_console_error))

from medchat.console import (  # noqa: E402, F401
    auth_views,
    colleague_views,
    conversation_views,
    sign_in_views,
    template_views,
)
