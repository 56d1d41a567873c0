"""Keyset pages: cost independent of how much history exists (API.md "Conventions").

Conversations are paged on (last_message_at, id), messages on their sequence number: each page
is an index range scan that starts where the previous page ended, never an offset.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

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
    """Keyset order on (last_message_at, id), resuming strictly past ``after``.

    The id breaks ties between conversations touched at the same instant, so a walk through
    the pages sees every conversation exactly once. Row-value comparison lets PostgreSQL use
    ``ix_conversations_status_last`` as a range scan.
    """
    key = tuple_(Conversation.last_message_at, Conversation.id)
    if after is not None:
        statement = statement.where(key < tuple_(*after) if descending else key > tuple_(*after))
    if descending:
        return statement.order_by(Conversation.last_message_at.desc(), Conversation.id.desc())
    return statement.order_by(Conversation.last_message_at.asc(), Conversation.id.asc())


def order_waiting_queue(
    statement: Select[Conversation], after: ActivityPosition | None, after_urgent: bool
) -> Select[Conversation]:
    """The open queue: urgent questions first, then each part oldest waiting first.

    The cursor stays an activity position (its format is the contract's); whether the
    conversation it names was urgent is read from that row by the caller (``after_urgent``:
    urgency is set when a question is asked and never changes). Keyset on (not urgent,
    last_message_at, id), resuming strictly past ``after``.
    """
    rank = case((Conversation.urgent.is_(True), 0), else_=1)
    if after is not None:
        position = (0 if after_urgent else 1, *after)
        statement = statement.where(
            tuple_(rank, Conversation.last_message_at, Conversation.id) > tuple_(*position)
        )
    return statement.order_by(rank, Conversation.last_message_at.asc(), Conversation.id.asc())


def activity_position(conversation: Conversation) -> ActivityPosition:
    return conversation.last_message_at, conversation.id
