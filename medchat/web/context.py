"""Request-scoped access to the runtime and the unit of work (HTTP layer only).

Blueprints call ``db_session()`` and ``runtime()`` and hand both to a service; services never
import this module.
"""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from medchat.services.context import ServiceContext


def runtime() -> ServiceContext:
    context: ServiceContext = current_app.extensions["medchat"]  # set by create_app
    return context


def db_session() -> Session:
    """The request's session; opened at the start of every request."""
    session: Session = g.db
    return session


def account_limit_key(email: str) -> str:
    """The per-account lockout bucket: the e-mail's blind index, shared by the API and the
    console, so failures through either count toward one lockout (no address is stored)."""
    return "account:" + runtime().profiles.email_index(email).hex()
