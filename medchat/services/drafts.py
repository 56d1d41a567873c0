"""Clinicians' drafts (issue 17, item 5): an unsent answer, saved as the doctor writes it.

A doctor interrupted mid-answer (a call, the end of a shift) finds their text again on any
device. A draft may hold medical text, so it is sealed like content, under the
conversation's DEK at a fresh key epoch (``ConversationAccess.ready_to_seal``, as a send),
bound to the conversation and its author; it is shown to its author only (another clinician
never sees a colleague's unsent words), and each read is audited as a content read. Saving
and discarding are audited data changes. A draft ends when its author sends an answer in the
conversation (same transaction), when they discard it, and with the conversation itself
(deletion forgets it with the live traces; retention destroys it with the rest).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from medchat import audit
from medchat.errors import NotFound
from medchat.identity.principal import Principal
from medchat.keys.sealing import ContentKey
from medchat.models import Conversation, ConversationDraft
from medchat.services.clinician_conversations import ClinicianConversationService
from medchat.services.context import ServiceContext
from medchat.services.draft_rows import forget_draft

#: As long as an answer may be (``MessageCreateSchema``).
MAX_DRAFT_LENGTH = 10_000


@dataclass(frozen=True)
class DraftView:
    body: str
    updated_at: datetime


class DraftService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime
        self.front = ClinicianConversationService(session, runtime)
        self.conversations = self.front.conversations

    def _row(self, conversation_id: uuid.UUID, author_id: uuid.UUID) -> ConversationDraft | None:
        return self.session.get(ConversationDraft, (conversation_id, author_id))

    def get(self, actor: Principal, conversation_id: uuid.UUID) -> DraftView:
        """The caller's draft of this conversation (404 ``not_found`` when there is none)."""
        found = self.find(actor, conversation_id)
        if found is None:
            raise NotFound("No draft.")
        return found

    def find(self, actor: Principal, conversation_id: uuid.UUID) -> DraftView | None:
        """The caller's draft, or None; audited as a content read when there is one."""
        self.front.require_audience(actor)
        conversation, deks = self.conversations.open(actor, conversation_id)
        row = self._row(conversation.id, actor.id)
        if row is None:
            return None
        self.conversations.audit_content_read(actor, conversation, "read.draft")
        body = ContentKey.for_conversation(deks, conversation).open_draft(actor.id, row.body)
        return DraftView(body, row.updated_at)

    def save(self, actor: Principal, conversation_id: uuid.UUID, body: str) -> DraftView:
        """Replace the caller's draft (409 when the conversation is closed: nothing to answer)."""
        self.front.require_audience(actor)
        conversation, deks = self.conversations.open(actor, conversation_id, for_update=True)
        self.conversations.require_open(conversation)
        self.conversations.access.ready_to_seal(actor, conversation, deks)
        sealed = ContentKey.for_conversation(deks, conversation).seal_draft(actor.id, body)
        now = self.conversations.now()
        row = self._row(conversation.id, actor.id)
        if row is None:
            self.session.add(
                ConversationDraft(
                    conversation_id=conversation.id, author_id=actor.id, body=sealed, updated_at=now
                )
            )
        else:
            row.body, row.updated_at = sealed, now
        self._audit(conversation, "draft.save")
        return DraftView(body, now)

    def discard(self, actor: Principal, conversation_id: uuid.UUID) -> None:
        """Delete the caller's draft (404 when there is none)."""
        self.front.require_audience(actor)
        conversation = self.front.access.load(actor, conversation_id)
        if not forget_draft(self.session, conversation.id, actor.id):
            raise NotFound("No draft.")
        self._audit(conversation, "draft.discard")

    def _audit(self, conversation: Conversation, action: str) -> None:
        audit.record(
            self.session,
            action,
            target_type="conversation",
            target_id=conversation.id,
            subject_id=conversation.member_id,
        )
