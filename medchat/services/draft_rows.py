"""Where drafts end, apart from their own service: an answer sent, a conversation deleted or
destroyed (``medchat.services.drafts`` says what a draft is)."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import delete
from sqlalchemy.orm import Session

from medchat.models import ConversationDraft


def forget_draft(session: Session, conversation_id: uuid.UUID, author_id: uuid.UUID) -> bool:
    """Delete one author's draft of a conversation; whether there was one."""
    gone = session.scalars(
        delete(ConversationDraft)
        .where(
            ConversationDraft.conversation_id == conversation_id,
            ConversationDraft.author_id == author_id,
        )
        .returning(ConversationDraft.author_id)
        .execution_options(synchronize_session=False)
    ).all()
    return bool(gone)


def forget_drafts(session: Session, conversation_ids: Collection[uuid.UUID]) -> None:
    """Every draft of these conversations (a deletion; retention's shredding deletes them
    with the rest of each conversation)."""
    if conversation_ids:
        session.execute(
            delete(ConversationDraft)
            .where(ConversationDraft.conversation_id.in_(list(conversation_ids)))
            .execution_options(synchronize_session=False)
        )
