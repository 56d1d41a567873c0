"""Liveness and readiness for load balancers (API.md "Health").

``/readyz`` checks every dependency this process is configured with, so a balancer stops
sending traffic to a host that would fail it: the database (a ``SELECT 1``), the rate
limiter's shared storage when there is one (a ping; ``memory://`` is this process's own), and
the server key files (still readable by the service user: a worker that restarts must load
them). A failure is 503 ``dependency_down`` naming what failed, with the same names as the
503 of other routes (``medchat.storage.outages``), never a URL, path or secret.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from access_control.key_directory import KEY_NAMES
from medchat.errors import DependencyDown
from medchat.storage.outages import DATABASE, KEY_FILES, RATE_LIMIT_STORAGE, RETRY_AFTER_SECONDS
from medchat.web.context import db_session, runtime
from medchat.web.errors import error_response

bp = Blueprint("health", __name__)
log = logging.getLogger("medchat.health")


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Every configured dependency answers; a balancer sends traffic only here."""
    checks = _checks()
    failed = [name for name, check in checks.items() if not _passes(name, check)]
    if failed:
        return error_response(
            503,
            DependencyDown.code,
            "Not ready: " + ", ".join(failed) + " unavailable.",
            {"failed": failed},
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return jsonify({"status": "ready", "checked": sorted(checks)})


def _checks() -> dict[str, Callable[[], Any]]:
    checks: dict[str, Callable[[], Any]] = {
        DATABASE: lambda: db_session().execute(text("SELECT 1")),
        KEY_FILES: _key_files_readable,
    }
    if not runtime().settings.ratelimit_storage_uri.startswith("memory://"):
        checks[RATE_LIMIT_STORAGE] = _limiter_storage_answers
    return checks


def _passes(name: str, check: Callable[[], Any]) -> bool:
    try:
        return check() is not False
    except Exception as error:  # an unready dependency, whatever it raises
        log.warning("readiness: %s unavailable: %s", name, type(error).__name__)
        return False


def _key_files_readable() -> bool:
    """Each server key file opens for reading (nothing is read: the keys stay where they are)."""
    directory = runtime().settings.key_dir
    for name in KEY_NAMES:
        with open(directory / f"{name}.key", "rb"):
            pass
    return True


def _limiter_storage_answers() -> bool:
    """A ping through each of this app's Flask-Limiter storages (``Storage.check``) and the
    sign-in budgets' own (the same URI)."""
    limiters = current_app.extensions.get("limiter", set())
    answers = all(limiter.storage.check() for limiter in limiters)
    if not (answers and runtime().sign_in_limits.storage_answers()):
        log.warning("readiness: %s does not answer", RATE_LIMIT_STORAGE)
        return False
    return True
