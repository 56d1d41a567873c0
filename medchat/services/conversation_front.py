"""What a member and a clinician do alike with a conversation: page its messages, write to it.

Each audience has its own front (``member_conversations``, ``clinician_conversations``) whose
one difference here is the check of who may use it (``require_audience``); the row check,
the audit of a clinician's reads and the rules of a send are ``ConversationService``'s, the
same for both.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat import audit
from medchat.identity.principal import Principal
from medchat.models import Conversation
from medchat.services.context import ServiceContext
from medchat.services.conversation_pages import Page
from medchat.services.conversation_views import ConversationSummary, MessageView
from medchat.services.conversations import ConversationService
from medchat.services.idempotency import Created
from medchat.services.read_markers import ReadMarkers


class ConversationFront:
    """The shared part of an audience's conversation service."""

    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime
        self.conversations = ConversationService(session, runtime)

    def require_audience(self, actor: Principal) -> None:
        """Raise ``Forbidden`` (or the like) unless ``actor`` may use this front."""
        raise NotImplementedError

    def mark_read(self, actor: Principal, conversation_id: uuid.UUID) -> None:
        """The caller has read everything so far. Idempotent (marking again moves nothing);
        audited each time as a read: ``content.read.marked`` for a clinician (the member's
        access log lists it), ``conversation.read_marked`` for the member."""
        self.require_audience(actor)
        conversation = self.conversations.access.load(actor, conversation_id)
        ReadMarkers(self.session).mark_read(actor.id, conversation, self.conversations.now())
        audit.record(
            self.session,
            "content.read.marked" if actor.role == Role.CLINICIAN else "conversation.read_marked",
            target_type="conversation",
            target_id=conversation.id,
            subject_id=conversation.member_id,
            details={"seq": conversation.message_count},
        )

    def with_read_state(
        self, actor: Principal, views: Sequence[ConversationSummary]
    ) -> Sequence[ConversationSummary]:
        """Fill each view's read state for ``actor`` (``read_markers.ReadMarkers.states``)."""
        rows = [self.session.get(Conversation, view.id) for view in views]
        states = ReadMarkers(self.session).states(
            actor.id, actor.role, [row for row in rows if row is not None]
        )
        for view in views:
            state = states.get(view.id)
            if state is not None:
                view.unread_count = state.unread_count
                view.read_through = state.read_through
                view.read_by_other_through = state.read_by_other_through
        return views

    def messages(
        self,
        actor: Principal,
        conversation_id: uuid.UUID,
        *,
        limit: int,
        cursor: int | None = None,
        ascending: bool = False,
    ) -> Page:
        """A page of the conversation's messages, newest first unless ``ascending`` (a
        clinician's read is audited)."""
        self.require_audience(actor)
        return self.conversations.messages(
            actor, conversation_id, limit=limit, cursor=cursor, ascending=ascending
        )

    def send(
        self,
        actor: Principal,
        conversation_id: uuid.UUID,
        body: str,
        *,
        idempotency_key: str | None = None,
    ) -> Created[MessageView]:
        """Write to the conversation: 409 when closed, 403 once its member's consent is
        withdrawn. A member's message puts it in the open queue; a clinician's answers it."""
        self.require_audience(actor)
        return self.conversations.send(
            actor, conversation_id, body, idempotency_key=idempotency_key
        )
