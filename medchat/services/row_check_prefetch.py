"""A conversation's row check read with the request's token check, kept for the one check.

A request that reads a page of a conversation or sends to it checks the caller's token, then
the conversation's row: two statements, each a round trip and PostgreSQL's per-statement
work, on the two requests members and doctors make most. ``medchat.services.request_checks``
reads both in one statement; the row check's part of its rows waits here
(``Session.info``) for ``ConversationAccess.check``, which runs every rule on it exactly as
on rows it read itself, and reads them itself whenever what waits here does not answer its
question: another conversation, another holder (the caller's verified role decides whose
wraps, never the statement), the other kind of read (a send's is locked and reads the
consent and the seal's facts), or a session with unwritten changes (the rows were read
before them). What waits is taken once: a second check in the same request reads again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

#: Where the rows wait (``Session.info``).
PREFETCHED = "prefetched_row_check"


@dataclass(frozen=True)
class PrefetchedRowCheck:
    conversation_id: uuid.UUID
    #: Whose wraps the rows hold (a ``Holder``, or None for a role that holds none).
    holder: str | None
    for_update: bool
    #: The row check's columns of each row, in ``ConversationAccess.check``'s order; none
    #: when the caller may not see the conversation or it does not exist.
    rows: Sequence[Sequence[Any]]


def keep(session: Session, prefetched: PrefetchedRowCheck) -> None:
    session.info[PREFETCHED] = prefetched


def prefetched_row_check(
    session: Session, conversation_id: uuid.UUID, holder: str | None, *, for_update: bool
) -> Sequence[Sequence[Any]] | None:
    """The rows kept for this question, taken (never answered twice); None when none were
    kept for it, or the session has changes not yet written."""
    prefetched: PrefetchedRowCheck | None = session.info.pop(PREFETCHED, None)
    if prefetched is None or session.new or session.dirty or session.deleted:
        return None
    if (prefetched.conversation_id, prefetched.holder, prefetched.for_update) != (
        conversation_id,
        holder,
        for_update,
    ):
        return None
    return prefetched.rows
