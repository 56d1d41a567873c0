"""Liveness and readiness for load balancers (API.md "Health")."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from medchat.api.errors import error_response
from medchat.web import db_session

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    """The process is up."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    """The database answers; a balancer sends traffic only here."""
    try:
        db_session().execute(text("SELECT 1"))
    except Exception:
        return error_response(503, "dependency_unavailable", "The database does not answer.")
    return jsonify({"status": "ready"})
