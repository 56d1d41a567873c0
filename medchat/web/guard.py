"""Every view declares its permission; the declaration is the check.

``@requires(Permission.X)`` raises before the view runs when the caller may not use it, and
marks the view so the app can refuse to start with an undeclared route under ``/api``
(``check_routes_declare_permissions``), as warehouse's API views do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from flask import Flask, g, request
from flask_login import current_user

from access_control.networks import require_allowed_network
from access_control.permissions import Permission, require
from access_control.roles import is_staff
from medchat.errors import NotAuthenticated
from medchat.identity.principal import Principal
from medchat.web.context import runtime

P = ParamSpec("P")
R = TypeVar("R")
PERMISSION_ATTRIBUTE = "required_permission"


def current_principal() -> Principal | None:
    # A proxy (never None itself): an anonymous user or none at all is not authenticated.
    if not getattr(current_user, "is_authenticated", False):
        return None
    principal: Principal = current_user._get_current_object()
    return principal


def loaded_principal() -> Principal | None:
    """The caller, if this request has already signed it in; never loads it (so never raises).

    For steps after the view (``after_request``): a request whose view never ran (an
    automatic ``OPTIONS``, a 404, a 405) has not checked its token, and loading it there
    would raise ``InvalidToken`` for a dead one outside every error handler: a 500.
    """
    user = g.get("_login_user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user  # type: ignore[no-any-return]


def signed_in() -> Principal:
    """The caller of a view guarded by ``requires`` (never anonymous there)."""
    principal = current_principal()
    if principal is None:
        raise NotAuthenticated
    return principal


def requires(permission: Permission) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Refuse callers without ``permission`` before the view runs.

    Place it directly under ``@bp.route``: decorators below it (``@bp.arguments``) run after
    the check, so an anonymous or unauthorised caller learns nothing from body validation.
    """

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            enforce(permission)
            return view(*args, **kwargs)

        setattr(guarded, PERMISSION_ATTRIBUTE, permission)
        return guarded

    return decorator


def enforce(permission: Permission) -> None:
    """Raise (401, 403) unless the caller of this request has ``permission``."""
    if permission is Permission.PUBLIC:
        return
    principal = current_principal()
    if principal is not None and is_staff(principal.role):
        # A staff session answers only from the staff networks, on every path its token
        # reaches (its own sessions, a password change), not only on the staff surfaces.
        require_allowed_network(request.remote_addr, runtime().settings.staff_networks)
    require(
        principal.role if principal else None,
        permission,
        mfa_verified=principal.mfa_verified if principal else False,
        mfa_needed=principal.mfa_needed if principal else False,
    )


def declared_permission(view: Callable[..., Any]) -> Permission | None:
    return getattr(view, PERMISSION_ATTRIBUTE, None)


def check_routes_declare_permissions(app: Flask, prefix: str = "/api/") -> None:
    """Refuse to run if any route under ``prefix`` lacks a ``@requires`` declaration."""
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(prefix) or rule.endpoint.startswith("api-docs."):
            continue
        if rule.rule.endswith("/openapi.json"):
            continue
        if declared_permission(app.view_functions[rule.endpoint]) is None:
            missing.append(rule.rule)
    if missing:
        raise RuntimeError(f"routes without a declared permission: {sorted(missing)}")
