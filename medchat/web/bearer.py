"""Loads the caller from ``Authorization: Bearer <access token>`` for Flask-Login.

A request without the header is anonymous; a header with a dead, unknown or expired token is
answered 401 ``invalid_token`` (the app then knows to refresh). The token row must belong to
an active account; the account's role and id become the audit context of the request.
"""

from __future__ import annotations

import uuid

from flask import Request
from sqlalchemy.orm import Session

from medchat import audit
from medchat.clock import Clock
from medchat.errors import InvalidToken
from medchat.identity.principal import Principal
from medchat.identity.tokens import TokenStore
from medchat.models import TokenKind
from medchat.services.request_checks import token_and_row_check


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise InvalidToken
    return value.strip()


def load_principal(
    request: Request,
    session: Session,
    clock: Clock,
    keyring_secret: bytes,
    row_check: tuple[uuid.UUID, bool] | None = None,
) -> Principal | None:
    """The caller of a bearer request; ``keyring_secret`` (the session-keyring server key)
    opens its keyring together with the token when a view needs the keys. ``row_check``
    (``medchat.web.row_checks``): the conversation the view checks, and whether it locks
    it, read with the token in one statement."""
    token = bearer_token(request)
    if token is None:
        return None
    if row_check is None:
        live = TokenStore(session, clock.now()).check(token, TokenKind.ACCESS)
    else:
        conversation_id, for_update = row_check
        live = token_and_row_check(
            session, clock.now(), token, conversation_id, for_update=for_update
        )
    audit.set_context(
        session,
        audit.AuditContext(
            actor_id=live.account_id, actor_role=live.role, address=request.remote_addr
        ),
    )
    return Principal.from_live_token(live, token, session, keyring_secret=keyring_secret)
