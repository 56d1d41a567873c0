"""Brute-force limits on sign-in: per client address and, progressively, per account.

Flask-Limiter counts in shared storage (``MEDCHAT_RATELIMIT_STORAGE_URI``: ``memory://`` for
one process, ``redis://`` for many hosts), so every process stays stateless. The per-account
limits count failed attempts only and tighten with the window (5 in 15 minutes, 10 an hour,
20 a day): that is the progressive lockout. The account key is the e-mail's blind index, so
unknown and known addresses are limited alike and no address is written to the storage.

Views declare their limits with ``@throttled(...)``; ``init_app`` builds one ``Limiter`` per
application from the settings and applies the declared limits, so two apps in one process
(tests, or an app and a CLI) never share a storage or a key prefix. A limit is shared by its
scope across every view that declares it: one account's failures count once, wherever they
happen. While the storage is unreachable the limits are counted per process (see ``init_app``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, request
from flask_limiter import Limiter

from access_control.networks import rate_limit_address
from access_control.permissions import Permission
from medchat.web.guard import declared_permission, enforce

F = TypeVar("F", bound=Callable[..., Any])
_ATTRIBUTE = "throttles"

#: Every sign-in style request from one address.
PER_ADDRESS = "30 per minute; 300 per hour"
#: Failed attempts against one account, whatever address they come from.
PER_ACCOUNT_FAILURES = "5 per 15 minutes; 10 per hour; 20 per day"


def client_address() -> str:
    """The client address after ``access_control.networks.TrustedProxies`` (a forwarded
    address is believed only from a configured proxy), as limits count it: an IPv6 address by
    its /64 (``rate_limit_address``)."""
    return rate_limit_address(request.remote_addr)


def is_failed_attempt(response: Response) -> bool:
    """Only wrong credentials, wrong codes and bad tokens count toward a lockout."""
    return response.status_code == 401


@dataclass(frozen=True)
class Throttle:
    limit: str
    scope: str
    key: Callable[[], str] = client_address
    deduct_when: Callable[[Response], bool] | None = None


def throttled(*throttles: Throttle) -> Callable[[F], F]:
    """Declare the limits of a view; ``init_app`` enforces them."""

    def decorator(view: F) -> F:
        setattr(view, _ATTRIBUTE, (*getattr(view, _ATTRIBUTE, ()), *throttles))
        return view

    return decorator


def throttles_of(view: Callable[..., Any]) -> tuple[Throttle, ...]:
    """The limits a view declared (the OpenAPI document lists 429 for it)."""
    return tuple(getattr(view, _ATTRIBUTE, ()))


def init_app(app: Flask, storage_uri: str, key_prefix: str) -> Limiter:
    """Create this app's limiter and wrap every view that declared throttles."""
    limiter = Limiter(
        key_func=client_address,
        app=app,
        storage_uri=storage_uri,
        key_prefix=key_prefix,
        headers_enabled=True,
        strategy="fixed-window",
        # A storage outage (Redis down) must not take sign-in down with it: Flask-Limiter
        # logs a warning, counts in this process's memory until the storage answers again
        # (a per-process limit: weaker across hosts, never none), and swallows whatever else
        # the storage raises. ``/readyz`` reports the outage (``medchat.api.health``).
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    for endpoint, route in list(app.view_functions.items()):
        # Flask-Limiter's decorator is typed for one kind of view, sync or async, at a time.
        declared: Callable[..., Any] = route
        view: Callable[..., Any] = route
        throttles: tuple[Throttle, ...] = getattr(view, _ATTRIBUTE, ())
        for throttle in throttles:
            # Shared by scope: every view declaring the same scope counts into one bucket,
            # so failures through the API and the console lock the same account.
            view = limiter.shared_limit(
                throttle.limit,
                scope=throttle.scope,
                key_func=throttle.key,
                deduct_when=throttle.deduct_when,
            )(view)
        if throttles:
            app.view_functions[endpoint] = _permission_first(declared, view)

    _drop_before_request_check(app, limiter)
    return limiter


def _drop_before_request_check(app: Flask, limiter: Limiter) -> None:
    """Take Flask-Limiter's before-request check off: every limit here is a view's own.

    A view's limits (``throttled``) are checked by the wrapper ``shared_limit`` put around it
    above. The before-request check is there for default, application and meta limits, which
    this limiter is built without (and the app's config, made in ``create_app``, sets none);
    yet it ran on every request, resolving and evaluating an empty set of limits: 0.24
    million instructions a request at first, and behind a request filter still 0.19 million
    of a send and 0.07 million of a read-50 (bench/README.md).
    """
    app.before_request_funcs[None].remove(limiter._check_request_limit)


def _permission_first(declared: Callable[..., Any], limited: F) -> F:
    """Refuse a caller without the view's permission (401, 403) before any limit counts it.

    The limits guard what a view does with a password or a code; a request that may not
    reach the view does none of it, so it neither spends the address's budget nor hides the
    401 that tells a client to sign in (RFC 6750) behind a 429. Public views (sign-in) are
    limited first, as before.
    """
    permission = declared_permission(declared)
    if permission is None or permission is Permission.PUBLIC:
        return limited

    @functools.wraps(limited)
    def checked(*args: Any, **kwargs: Any) -> Any:
        enforce(permission)
        return limited(*args, **kwargs)

    return checked  # type: ignore[return-value]
