"""A request's token check and its conversation's row check in one statement (PostgreSQL).

A member's or a doctor's page read and send check the caller's token (``TokenStore.check``),
then the conversation's row (``ConversationAccess.check``): two statements, each a round trip
from a request thread that then waits for a core again, and PostgreSQL's work of starting a
statement. Neither reads what the other could change, so they are read together: the token's
and its account's columns (``TOKEN_CHECK``) and, beside them, the row check's columns
(``row_check_statements.row_check``) of the conversation the request names, as a lateral
subquery whose holder (whose key wraps) and visible rows come from the account's role in the
same row: a member's own conversations, any for a clinician, none for another role, so a
send never locks a row its caller may not write. No rule moves here. The token is checked
from its part of the rows as ever (both tags, spent, expired, inactive account), and the row
check's part waits (``row_check_prefetch``) for ``ConversationAccess.check``, which runs
every rule on it and reads again unless the rows answer its exact question, with the holder
the caller's verified role gives. A send's statement runs in its transaction and locks the
conversation's row as the send's row check did; a read's opens none, as neither of the two
it replaces did.

Only views marked ``checks_conversation_row`` (``medchat.web.row_checks``) read this way: a
flow whose first statement after the token is that row check, so nothing it writes comes
between the two. SQLite (no ``LATERAL``) reads the two statements as before.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, or_, true
from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat.db_driver import DriverStatement
from medchat.identity.tokens import (
    TOKEN_CHECK,
    TOKEN_CHECK_ACCOUNTS,
    TOKEN_CHECK_WIDTH,
    LiveToken,
    TokenStore,
    check_params,
)
from medchat.models import RECORD_COLUMNS, TokenKind
from medchat.services.conversation_access import HOLDERS
from medchat.services.row_check_prefetch import PrefetchedRowCheck, keep
from medchat.services.row_check_statements import row_check

#: The account's row as ``TOKEN_CHECK`` reads it.
_accounts = TOKEN_CHECK_ACCOUNTS
#: Whose wraps the caller's role opens (``HOLDERS``), from the account's row: NULL for a
#: role that holds none.
_HOLDER = case({role: str(holder) for role, holder in HOLDERS.items()}, value=_accounts.c.role)


def _visible(conversations: Any) -> Any:
    """The conversations the row check reads for the caller: a member's own, any for a
    clinician (``ConversationAccess._admit`` decides the rest), none for another role."""
    return or_(
        _accounts.c.role == Role.CLINICIAN,
        and_(_accounts.c.role == Role.MEMBER, conversations.member_id == _accounts.c.id),
    )


def _statement(*, for_update: bool) -> DriverStatement:
    checked = row_check(for_update=for_update, holder=_HOLDER, visible=_visible).lateral("rc")
    statement = TOKEN_CHECK.add_columns(*checked.c, _HOLDER.label("holder")).outerjoin(
        checked, true()
    )
    return DriverStatement(statement, outside_transaction=not for_update)


_STATEMENTS = {for_update: _statement(for_update=for_update) for for_update in (False, True)}
#: Where the conversation's id is in a row (NULL: no conversation the caller may see).
_CONVERSATION_ID = TOKEN_CHECK_WIDTH + RECORD_COLUMNS.index("id")


def token_and_row_check(
    session: Session, now: datetime, token: str, conversation_id: uuid.UUID, *, for_update: bool
) -> LiveToken:
    """``TokenStore.check`` of an access token, with ``conversation_id``'s row check read in
    the same statement and kept for ``ConversationAccess.check``; on SQLite, the token check
    alone."""
    store = TokenStore(session, now)
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return store.check(token, TokenKind.ACCESS)
    params: dict[str, Any] = {
        **check_params(token, TokenKind.ACCESS),
        "conversation_id": conversation_id,
    }
    rows = _STATEMENTS[for_update].all(connection, params)
    live = store.live(rows[0] if rows else None)
    holder = rows[0][-1]
    if holder is not None:
        # Another role holds no wraps; nothing is kept, and its check reads for itself.
        checked = [row[TOKEN_CHECK_WIDTH:-1] for row in rows if row[_CONVERSATION_ID] is not None]
        keep(session, PrefetchedRowCheck(conversation_id, holder, for_update, checked))
    return live
