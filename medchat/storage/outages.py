"""Which failures mean a dependency is down: the one place that tells an outage from a bug.

While PostgreSQL restarts, fails over or refuses writes, or while Redis (the rate limiter's
storage) is unreachable, a request fails through no fault of its own and will work again in a
moment: the contract's answer is 503 ``dependency_down`` with ``Retry-After`` (API.md
"Conventions"), not 500 ``internal_error``, which means "a bug of ours". ``failed_dependency``
names the dependency behind an exception (or None: a bug); ``medchat.web.errors`` and the
request's transaction (``medchat.web.transaction``) answer through it, ``medchat.db`` uses
``STALE_SESSION_SQLSTATES`` to throw such connections away so the pool heals by itself, and
``/readyz`` reports the same names.
"""

from __future__ import annotations

from typing import Final

import psycopg
from limits.errors import StorageError
from sqlalchemy import exc as sa_exc

from medchat.db import STALE_SESSION_SQLSTATES, sqlstate_of

#: The names ``/readyz`` and the 503's ``details`` use; never a URL, host or secret.
DATABASE: Final = "database"
RATE_LIMIT_STORAGE: Final = "rate_limit_storage"
KEY_FILES: Final = "key_files"

#: Seconds a client should wait before retrying a 503: a restart or fail-over takes seconds.
RETRY_AFTER_SECONDS: Final = 5


try:  # redis is an optional extra of flask-limiter; without it no Redis storage exists.
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    _REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)
except ImportError:  # pragma: no cover - the redis extra is a dependency
    _REDIS_ERRORS = ()


def database_unavailable(error: BaseException) -> bool:
    """The database could not be reached, dropped the connection, or refuses writes."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        # OperationalError: refused, dropped, shut down, locked (SQLite), cannot open;
        # TimeoutError: the pool waited in vain for a connection.
        return True
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    return sqlstate_of(error) in STALE_SESSION_SQLSTATES


def storage_unavailable(error: BaseException) -> bool:
    """The rate limiter's storage (Redis) could not be reached."""
    return isinstance(error, (StorageError, *_REDIS_ERRORS))


def failed_dependency(error: BaseException | None) -> str | None:
    """The dependency whose outage raised ``error`` (also along its causes), or None."""
    seen = 0
    while error is not None and seen < 8:
        if database_unavailable(error):
            return DATABASE
        if storage_unavailable(error):
            return RATE_LIMIT_STORAGE
        error = getattr(error, "original_exception", None) or error.__cause__
        seen += 1
    return None
