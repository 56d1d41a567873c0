"""Unread markers for the console: how far each clinician has read each conversation.

A conversation is unread for a clinician when it has messages past the last position that
clinician opened. Positions are message sequence numbers, so no content is involved.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from medchat.models import Conversation, ConversationRead


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
