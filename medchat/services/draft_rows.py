"""Where drafts end, apart from their own service: an answer sent, a conversation deleted or
destroyed (``medchat.services.drafts`` says what a draft is)."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import bindparam, delete
from sqlalchemy.orm import Session

from medchat.db import table_of
from medchat.models import ConversationDraft

#: One author's draft of a conversation, deleted (on every answer a clinician sends). Built
#: once, and of the table's columns: SQLAlchemy makes an ORM-enabled DELETE again at each
#: execution.
_drafts = table_of(ConversationDraft)
_FORGET_DRAFT = (
    delete(_drafts)
    .where(
        _drafts.c.conversation_id == bindparam("conversation_id"),
        _drafts.c.author_id == bindparam("author_id"),
    )
    .returning(_drafts.c.author_id)
)


def forget_draft(session: Session, conversation_id: uuid.UUID, author_id: uuid.UUID) -> bool:
    """Delete one author's draft of a conversation; whether there was one."""
    params = {"conversation_id": conversation_id, "author_id": author_id}
    return bool(session.scalars(_FORGET_DRAFT, params).all())


def forget_drafts(session: Session, conversation_ids: Collection[uuid.UUID]) -> None:
    """Every draft of these conversations (a deletion; retention's shredding deletes them
    with the rest of each conversation)."""
    if conversation_ids:
        session.execute(
            delete(ConversationDraft)
            .where(ConversationDraft.conversation_id.in_(list(conversation_ids)))
            .execution_options(synchronize_session=False)
        )
