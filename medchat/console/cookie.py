"""The console's session cookie: holds the session token, nothing else that matters.

Flask's signed session cookie carries the console token (and Flask-WTF's CSRF secret). It is
HttpOnly, SameSite=Strict, Secure and ``__Host-`` prefixed outside development (set in
``medchat.app``). The token is checked against its hash in the database on every request, so
signing the cookie is not what makes it trustworthy: the database row is, and deleting the row
(logout, expiry, revocation) ends the session wherever the cookie went.
"""

from __future__ import annotations

from flask import g, request, session

from medchat import audit
from medchat.errors import InvalidToken
from medchat.identity.console_sessions import ConsoleSessions
from medchat.identity.principal import Principal
from medchat.services.sign_ins import sign_in_origin
from medchat.web.context import db_session, runtime
from medchat.web.throttling import client_address

SESSION_KEY = "console"
PENDING_KEY = "console_pending"
#: The password step's scrypt runs, sealed to the pending token and the server key
#: (``ConsoleSessions.start_pending``): kept by the client, never by the database.
CARRIED_KEY = "console_pending_runs"


def console_sessions() -> ConsoleSessions:
    settings = runtime().settings
    return ConsoleSessions(
        db_session(),
        runtime().clock.now(),
        idle=settings.console_idle,
        absolute=settings.console_absolute,
        keyring_secret=runtime().keys.session_keyring,
        origin=sign_in_origin(runtime(), request.headers.get("User-Agent"), client_address()),
    )


def load_principal() -> Principal | None:
    """The signed-in clinician of this console request, or None (then: the login page)."""
    token = session.get(SESSION_KEY)
    if not token:
        return None
    try:
        record, account = console_sessions().authenticate(token)
    except InvalidToken:
        session.pop(SESSION_KEY, None)
        g.console_session_ended = True
        return None
    audit.set_context(
        db_session(),
        audit.AuditContext(
            actor_id=account.id, actor_role=account.role, address=request.remote_addr
        ),
    )
    return Principal(account, record, token, keyring_secret=runtime().keys.session_keyring)


def begin(token: str, *, pending: bool, carried: str | None = None) -> None:
    """Store a new session token, dropping everything the old cookie carried (renewal)."""
    session.clear()
    session[PENDING_KEY if pending else SESSION_KEY] = token
    if carried is not None:
        session[CARRIED_KEY] = carried


def end() -> None:
    session.clear()
