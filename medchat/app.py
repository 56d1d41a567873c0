"""The application factory: configuration, database, sign-in, limits, blueprints.

``create_app`` reads like a table of contents (flaskr's ``create_app``): tests pass their own
settings and clock; production reads ``MEDCHAT_*`` and refuses unsafe settings.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from flask import Flask, g
from flask_login import LoginManager
from flask_smorest import Api, Blueprint

from access_control.networks import TrustedProxies
from medchat import console
from medchat.api import (
    admin,
    attachments,
    auth,
    clinician,
    colleagues,
    compliance,
    conversations,
    dpo,
    health,
    member,
    notifications,
    service,
)
from medchat.api import docs as api_docs
from medchat.api.openapi import ContractPlugin, init_api
from medchat.clock import Clock
from medchat.config import Settings
from medchat.console import cookie as console_cookie
from medchat.console import security as console_security
from medchat.schemas.common import ErrorSchema
from medchat.services.context import start_service_context
from medchat.web import (
    bearer,
    metrics_endpoint,
    password_gate,
    request_log,
    rotation_due,
    throttling,
)
from medchat.web import json_bodies as http_json
from medchat.web import rewrap_drain as http_rewrap
from medchat.web import security_headers as http_security
from medchat.web import transaction as http_transaction
from medchat.web.errors import register_error_handlers
from medchat.web.flask_app import MedchatFlask
from medchat.web.guard import check_routes_declare_permissions
from medchat.web.request_body import ReadableBodies
from medchat.web.row_checks import row_check_of
from medchat.web.uploads import InMemoryUploadRequest
from medchat.web.url_rules import LazyBuilderRule


class MedchatApi(Api):
    """flask-smorest's Api with our error contract instead of its default error body, in the
    answers and in the OpenAPI document alike; no catch-all ``default`` response: each
    operation lists its own (``medchat.api.openapi``).

    The document is written when it is first read (``spec``), not as each blueprint is
    registered: about half of building an app, paid by every worker and every test's app,
    while most never serve ``/api/v1/openapi.json``. It is the same document: the blueprints
    are documented in the order they were registered, against the same URL map.
    """

    ERROR_SCHEMA = ErrorSchema  # type: ignore[assignment]  # smorest's documented override
    # None: no catch-all error response (each operation lists its own: medchat.api.openapi).
    DEFAULT_ERROR_RESPONSE_NAME = None  # type: ignore[assignment]  # smorest reads None as off

    def __init__(self, app: Flask) -> None:
        self._undocumented: list[tuple[Blueprint, str, Any]] = []
        self._documenting = threading.Lock()
        super().__init__(app, spec_kwargs={"extra_plugins": [ContractPlugin(app)]})
        init_api(self)

    @property  # smorest assigns it as a plain attribute; the setter below takes that
    def spec(self) -> Any:
        if self._undocumented:
            self._document_registered()
        return self._spec

    @spec.setter
    def spec(self, value: Any) -> None:
        self._spec = value

    def register_blueprint(self, blp: Blueprint, *, parameters: Any = None, **options: Any) -> None:
        """``Api.register_blueprint`` but for the document, which ``spec`` writes later."""
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self._undocumented.append((blp, name, parameters))

    def _document_registered(self) -> None:
        # A blueprint leaves the list only once documented: a reader that finds it empty
        # reads the whole document.
        with self._documenting:
            while self._undocumented:
                blp, name, parameters = self._undocumented[0]
                blp.register_views_in_doc(
                    self, self._app, self._spec, name=name, parameters=parameters
                )
                self._spec.tag({"name": name, "description": blp.description})
                del self._undocumented[0]

    def _register_error_handlers(self) -> None:
        register_error_handlers(self._app)


def create_app(
    config: Mapping[str, Any] | None = None,
    *,
    clock: Clock | None = None,
    check_pins: bool = True,
) -> Flask:
    """Build the WSGI application. ``config`` overrides settings by field name.

    Refuses to start (``ConfigurationError``) when a role key in the database is not pinned
    by the deployment (SECURITY-MODEL 9). The CLI skips that check so an operator can still
    inspect and repair keys.
    """
    settings = Settings.from_env(overrides=config)
    runtime = start_service_context(settings, clock, check_pins=check_pins)

    app = MedchatFlask(__name__)
    # Multipart files stay in bounded memory: werkzeug would spool uploads over 500 KB to
    # temporary files, and attachment plaintext must never touch a disk (http_uploads).
    app.request_class = InMemoryUploadRequest
    # URL builders compiled on first use, not ~240 of them at every start (medchat.web.url_rules).
    app.url_rule_class = LazyBuilderRule
    app.config.update(
        SECRET_KEY=runtime.keys.session_signing,
        MAX_CONTENT_LENGTH=settings.max_attachment_bytes + 64 * 1024,
        API_TITLE="medchat",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        # The console's cookie: its own name, __Host- bound to this origin outside development.
        SESSION_COOKIE_NAME=("__Host-" if settings.cookie_secure else "") + "medchat-console",
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        # CSRF is checked by the console blueprint only (the API uses bearer tokens). The
        # Referer check is off: pages send no Referer (Referrer-Policy: no-referrer); the
        # console checks Origin and Sec-Fetch-Site instead.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_SSL_STRICT=False,
    )
    app.extensions["medchat"] = runtime
    if settings.trusted_proxy_networks:
        # X-Forwarded-For only from the configured proxies' addresses (never ProxyFix's bare
        # hop count, which believes any peer).
        app.wsgi_app = TrustedProxies(  # type: ignore[method-assign]  # Flask's middleware hook
            app.wsgi_app, settings.trusted_proxy_networks, settings.trusted_proxies
        )

    # A body that cannot be read (a malformed chunk) is a 400 wherever it is first read.
    app.wsgi_app = ReadableBodies(app.wsgi_app)  # type: ignore[method-assign]
    # Request ids, the JSON request log line and latency metrics, GET /metrics.
    request_log.init_app(app)
    app.register_blueprint(metrics_endpoint.bp)
    # Order matters: the transaction opens first, so refusals after it (network, rate
    # limits: the limiter registers its checks last) can be audited in it.
    http_transaction.init_app(app)
    http_security.init_app(app)
    # Before the views and the limiter's key functions read it (they run later).
    http_json.init_app(app)
    # After-request steps run in reverse order: this drain runs before the commit above.
    http_rewrap.init_app(app)
    rotation_due.init_app(app)
    _init_login(app)

    app.register_blueprint(health.bp)
    app.register_blueprint(console.bp)
    console_security.init_app(app)
    api = MedchatApi(app)
    app.register_blueprint(api_docs.bp)
    for blueprint in (
        auth.bp,
        member.bp,
        notifications.bp,
        colleagues.bp,
        admin.bp,
        attachments.bp,
        conversations.bp,
        clinician.bp,
        compliance.bp,
        dpo.bp,
        service.bp,
    ):
        api.register_blueprint(blueprint)
    check_routes_declare_permissions(app)
    throttling.init_app(app, settings.ratelimit_storage_uri, settings.ratelimit_key_prefix)
    # Outside every other layer, once every view is registered.
    password_gate.init_app(app)

    logging.getLogger("medchat").setLevel(logging.INFO)
    return app


def _init_login(app: Flask) -> None:
    login = LoginManager()
    login.init_app(app)

    @login.request_loader
    def _load(req: Any) -> Any:
        # The console knows its own session only (the cookie, with its idle and absolute
        # limits), whatever header comes with a request: an API token, a member's among them,
        # opened console pages, and a malformed one failed again inside the error page.
        if req.path.startswith("/console"):
            return console_cookie.load_principal()
        runtime = app.extensions["medchat"]
        return bearer.load_principal(
            req, g.db, runtime.clock, runtime.keys.session_keyring, row_check_of(app, req)
        )

    @login.unauthorized_handler
    def _unauthorized() -> Any:  # pragma: no cover - views raise NotAuthenticated instead
        from medchat.errors import NotAuthenticated

        raise NotAuthenticated
