"""Keyset pages: cost independent of how much history exists (API.md "Conventions").

Conversations are paged on (last_message_at, id) for their member, on (status_since, id) for
clinicians, messages on their sequence number: each page is an index range scan that starts
where the previous page ended, never an offset.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, case, tuple_

from medchat.models import Conversation

#: Where a page of conversations ended: the last one's activity time and id.
ActivityPosition = tuple[datetime, uuid.UUID]


Item = TypeVar("Item")
Cursor = TypeVar("Cursor")


@dataclass
class Page(Generic[Item, Cursor]):
    """One page of items and the position to resume from (``None`` on the last page)."""

    items: list[Item]
    next_cursor: Cursor | None


def order_by_activity(
    statement: Select[Conversation], after: ActivityPosition | None, *, descending: bool
) -> Select[Conversation]:
    """Keyset order on (last_message_at, id), resuming strictly past ``after``: a member's
    own list, newest activity first (walked through ``member_id``'s index)."""
    return _keyset(statement, Conversation.last_message_at, after, descending=descending)


def order_by_status_time(
    statement: Select[Conversation], after: ActivityPosition | None
) -> Select[Conversation]:
    """The clinicians' answered and closed lists: keyset on (status_since, id), the most
    recently answered or closed first, a range scan of ``ix_conversations_status_since``."""
    return _keyset(statement, Conversation.status_since, after, descending=True)


def _keyset(
    statement: Select[Conversation],
    column: Any,
    after: ActivityPosition | None,
    *,
    descending: bool,
) -> Select[Conversation]:
    """Keyset order on (column, id), resuming strictly past ``after``.

    The id breaks ties between conversations at the same instant, so a walk through the pages
    sees every conversation exactly once. Row-value comparison lets PostgreSQL walk an index
    on (status, column, id) as a range scan.
    """
    key = tuple_(column, Conversation.id)
    if after is not None:
        statement = statement.where(key < tuple_(*after) if descending else key > tuple_(*after))
    if descending:
        return statement.order_by(column.desc(), Conversation.id.desc())
    return statement.order_by(column.asc(), Conversation.id.asc())


def order_waiting_queue(
    statement: Select[Conversation], after: ActivityPosition | None, after_urgent: bool
) -> Select[Conversation]:
    """The open queue: urgent questions first, then each part oldest waiting first (since
    the member's first message after the last answer: ``status_since``).

    The cursor stays a (time, id) position (its format is the contract's); whether the
    conversation it names was urgent is read from that row by the caller (``after_urgent``:
    urgency is set when a question is asked and never changes). Keyset on (not urgent,
    status_since, id), resuming strictly past ``after``.
    """
    rank = case((Conversation.urgent.is_(True), 0), else_=1)
    if after is not None:
        position = (0 if after_urgent else 1, *after)
        statement = statement.where(
            tuple_(rank, Conversation.status_since, Conversation.id) > tuple_(*position)
        )
    return statement.order_by(rank, Conversation.status_since.asc(), Conversation.id.asc())


def activity_position(conversation: Conversation) -> ActivityPosition:
    return conversation.last_message_at, conversation.id


def status_position(conversation: Conversation) -> ActivityPosition:
    """Where a clinician's page ended: the last conversation's ``status_since`` and id."""
    return conversation.status_since, conversation.id
