"""Read markers: how far each participant has read each conversation (issue 17, item 2).

One row per reader and conversation (``conversation_reads``, migration 0003): the member's own
and each clinician's. Positions are message sequence numbers, so no content is involved.

- The console marks a conversation read when a clinician opens it; the APIs mark it on
  ``POST .../read`` (idempotent: marking again moves nothing). Audited as a read by the caller.
- A conversation is unread for a clinician when it has messages past that clinician's marker
  (the console's dots); ``unread_count`` counts the *other side's* messages past the viewer's
  own marker (a member: the doctors' replies; a clinician: the member's messages).
- ``read_through`` is the time of the last message the viewer has read, and
  ``read_by_other_through`` the same for the other side (for a member: the furthest any
  doctor has read), so an app marks each message read or not by its ``created_at`` without a
  per-message field: message pages stay two statements on PostgreSQL (``test_hot_path_statements``).
- A marker is inert (``models.conversations.ConversationRead``): a planted one shows a wrong
  dot or count, nothing more.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat.models import Conversation, ConversationRead, Message


@dataclass(frozen=True)
class ReadState:
    """What one viewer is told of a conversation's read state."""

    unread_count: int = 0
    read_through: datetime | None = None
    read_by_other_through: datetime | None = None


class ReadMarkers:
    def __init__(self, session: Session) -> None:
        self.session = session

    def mark_read(self, account_id: uuid.UUID, conversation: Conversation, now: datetime) -> None:
        """Record that ``account_id`` has seen everything up to the latest message."""
        row = self.session.get(ConversationRead, (conversation.id, account_id))
        if row is None:
            self.session.add(
                ConversationRead(
                    conversation_id=conversation.id,
                    account_id=account_id,
                    last_read_seq=conversation.message_count,
                    read_at=now,
                )
            )
        elif row.last_read_seq != conversation.message_count:
            row.last_read_seq = conversation.message_count
            row.read_at = now
        self.session.flush()

    def unread(
        self, account_id: uuid.UUID, conversation_ids: Iterable[uuid.UUID]
    ) -> set[uuid.UUID]:
        """The ids among ``conversation_ids`` with messages this clinician has not opened."""
        ids = list(conversation_ids)
        if not ids:
            return set()
        read = dict(
            self.session.execute(
                select(ConversationRead.conversation_id, ConversationRead.last_read_seq).where(
                    ConversationRead.account_id == account_id,
                    ConversationRead.conversation_id.in_(ids),
                )
            ).all()
        )
        counts = dict(
            self.session.execute(
                select(Conversation.id, Conversation.message_count).where(Conversation.id.in_(ids))
            ).all()
        )
        return {cid for cid in ids if counts.get(cid, 0) > read.get(cid, 0)}

    def states(
        self, viewer_id: uuid.UUID, viewer_role: str, conversations: Iterable[Conversation]
    ) -> dict[uuid.UUID, ReadState]:
        """The read state of each conversation for ``viewer_id`` (three statements a list)."""
        rows = {c.id: c for c in conversations}
        if not rows:
            return {}
        is_member = viewer_role == Role.MEMBER
        mine: dict[uuid.UUID, int] = {}
        theirs: dict[uuid.UUID, int] = {}
        markers = self.session.execute(
            select(
                ConversationRead.conversation_id,
                ConversationRead.account_id,
                ConversationRead.last_read_seq,
            ).where(ConversationRead.conversation_id.in_(list(rows)))
        )
        for conversation_id, account_id, seq in markers:
            member_id = rows[conversation_id].member_id
            if account_id == viewer_id:
                mine[conversation_id] = seq
            # The other side: for a member, any clinician; for a clinician, the member.
            if (account_id != member_id) if is_member else (account_id == member_id):
                theirs[conversation_id] = max(seq, theirs.get(conversation_id, 0))
        other_role = "clinician" if is_member else "member"
        unread = dict(
            self.session.execute(
                select(Message.conversation_id, func.count())
                .where(
                    Message.conversation_id.in_(list(rows)),
                    Message.author_role == other_role,
                    or_(
                        *[
                            and_(Message.conversation_id == cid, Message.seq > mine.get(cid, 0))
                            for cid in rows
                        ]
                    ),
                )
                .group_by(Message.conversation_id)
            ).all()
        )
        wanted = {(cid, seq) for cid, seq in (*mine.items(), *theirs.items()) if seq > 0}
        times: dict[tuple[uuid.UUID, int], datetime] = {}
        if wanted:
            found = self.session.execute(
                select(Message.conversation_id, Message.seq, Message.created_at).where(
                    or_(*[and_(Message.conversation_id == c, Message.seq == n) for c, n in wanted])
                )
            )
            times = {(cid, seq): at for cid, seq, at in found}
        return {
            cid: ReadState(
                unread_count=unread.get(cid, 0),
                read_through=times.get((cid, mine.get(cid, 0))),
                read_by_other_through=times.get((cid, theirs.get(cid, 0))),
            )
            for cid in rows
        }
