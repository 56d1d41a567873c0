"""``/api/v1/docs``: the OpenAPI document in Swagger UI, served from this origin.

The assets are those flask-swagger-ui ships (``flask_swagger_ui/dist``: Swagger UI's own
distribution, pinned by the package's version), never a CDN: the pages load nothing from
other origins, and the CSP of ``medchat.web.security_headers`` (``script-src 'self'``, no inline
script or style) applies unchanged. Swagger UI's usual start-up is an inline ``<script>``;
here it is a file of its own (``medchat-docs.js``), so no CSP exception is needed. Only the
files the page uses are served, by name: nothing else of the package's folder is reachable.
Public, as the document itself is: it describes the API, it holds no data.
"""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Response, abort, send_from_directory

from access_control.permissions import Permission
from medchat.web.guard import requires

bp = Blueprint("docs", __name__, url_prefix="/api/v1/docs")

_DIST = Path(flask_swagger_ui.__file__).parent / "dist"
#: The distribution files the page loads (the bundle carries the API layout it uses).
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})
_OPENAPI_URL = "/api/v1/openapi.json"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>medchat API v1</title>
  <link rel="stylesheet" href="/api/v1/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/api/v1/docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/v1/docs/swagger-ui-bundle.js"></script>
  <script src="/api/v1/docs/medchat-docs.js"></script>
</body>
</html>
"""

#: Swagger UI's start-up, as a script file. "Try it out" calls this origin (connect-src
#: 'self'); the token typed under "Authorize" stays in the page (never stored).
_START = f"""window.addEventListener("load", function () {{
  window.ui = SwaggerUIBundle({{
    url: "{_OPENAPI_URL}",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  }});
}});
"""


@bp.get("")
@requires(Permission.PUBLIC)
def index() -> Response:
    """The documentation page."""
    return Response(_PAGE, mimetype="text/html")


@bp.get("/medchat-docs.js")
@requires(Permission.PUBLIC)
def start_script() -> Response:
    """Swagger UI's start-up (the CSP allows no inline script)."""
    return Response(_START, mimetype="text/javascript")


@bp.get("/<name>")
@requires(Permission.PUBLIC)
def asset(name: str) -> Response:
    """One of ``ASSETS``; any other name is a 404."""
    if name not in ASSETS:
        abort(404)
    return send_from_directory(_DIST, name)
