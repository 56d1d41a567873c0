"""The clinicians' side of conversations: the queue, one case, replies, closing.

A clinician sees every conversation (one physician role key opens them all), so each call
first checks that the session holds that key (403 ``role_key_required`` otherwise) and then
audits every read of content with the member as subject: SECURITY-MODEL "Audit" and the
member's access log. Of the member, a clinician gets only what ``medchat.services.patient_view``
builds: first name, birth date, sex and a per-conversation pseudonym.

Queue order: ``open`` conversations the member marked urgent first, then oldest-waiting first
(``status_since``: the member's first message after the last answer, so a second message
before the answer keeps the conversation's place), so the queue is worked front to back and
nobody starves; one waiting longer than ``MEDCHAT_RESPONSE_TARGET_HOURS`` is ``overdue``;
``answered`` and ``closed`` the most recently answered or closed first, as a history is read.
Both are keyset walks of ``ix_conversations_status_since``. The queue is audited per
conversation listed (one ``content.read.queue`` entry each, since each shows a sealed subject
and has its own member); one that fails an integrity check is listed without content and
audited as ``conversation.integrity_refused`` instead (``conversation_refusals``), and the rest
is served.

Claims (``medchat.services.claims``): each case carries its live claim as this clinician sees
it, the queue filters on them (``claim``: ``all``, ``unclaimed``, ``claimed``, ``mine``), and
``claim``, ``release`` and ``hand_over`` lock the conversation before they decide.
"""

from __future__ import annotations

import uuid

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat import audit
from medchat.errors import Forbidden, ValidationFailed
from medchat.identity.principal import Principal
from medchat.models import (
    LIVE_STATUSES,
    Conversation,
    ConversationClaim,
    ConversationStatus,
    NotificationKind,
)
from medchat.services.claims import ClaimView
from medchat.services.context import ServiceContext
from medchat.services.conversation_front import ConversationFront
from medchat.services.conversation_pages import (
    ActivityPosition,
    Page,
    order_by_status_time,
    order_waiting_queue,
    status_position,
)
from medchat.services.conversation_views import CaseView, MessageView
from medchat.services.draft_rows import forget_draft
from medchat.services.idempotency import Created
from medchat.services.notifications import enqueue
from medchat.services.patient_view import patient_view, patient_views
from medchat.services.restrictions import active_restriction_exists

#: The queue's claim filters.
CLAIM_FILTERS = ("all", "unclaimed", "claimed", "mine")


class ClinicianConversationService(ConversationFront):
    """A clinician's front: every conversation it returns is a ``CaseView`` (the patient
    object, no member id). Paging messages and answering (``reply``) are
    ``ConversationFront``'s."""

    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        super().__init__(session, runtime)
        self.access = self.conversations.access

    def require_audience(self, actor: Principal) -> None:
        if actor.role != Role.CLINICIAN:
            raise Forbidden
        self.access.require_role_key(actor)

    def send(
        self,
        actor: Principal,
        conversation_id: uuid.UUID,
        body: str,
        *,
        idempotency_key: str | None = None,
    ) -> Created[MessageView]:
        """Answer: the conversation becomes ``answered`` (``ConversationFront.send``), and the
        author's draft of it, now sent, ends in the same transaction."""
        created = super().send(actor, conversation_id, body, idempotency_key=idempotency_key)
        if not created.replayed:
            forget_draft(self.session, conversation_id, actor.id)
        return created

    reply = send

    def queue(
        self,
        actor: Principal,
        *,
        status: str = ConversationStatus.OPEN,
        limit: int,
        after: ActivityPosition | None = None,
        claim: str = "all",
    ) -> Page[CaseView, ActivityPosition]:
        """One page of conversations in ``status`` (order: see the module docstring), filtered
        on their live claims (``CLAIM_FILTERS``)."""
        self.require_audience(actor)
        # A sealed conversation is in no queue: it left every clinician view at deletion.
        if status not in LIVE_STATUSES:
            raise ValidationFailed(details={"status": ["Not a conversation status."]})
        if claim not in CLAIM_FILTERS:
            raise ValidationFailed(details={"claim": ["Not a claim filter."]})
        statement = select(Conversation).where(Conversation.status == status)
        if status != ConversationStatus.OPEN:
            # A member who restricted processing: only their open questions are listed.
            statement = statement.where(~active_restriction_exists(Conversation.member_id))
        if claim != "all":
            live = exists().where(
                ConversationClaim.conversation_id == Conversation.id,
                ConversationClaim.expires_at > self.conversations.now(),
            )
            if claim == "mine":
                live = live.where(ConversationClaim.clinician_id == actor.id)
            statement = statement.where(~live if claim == "unclaimed" else live)
        if status == ConversationStatus.OPEN:
            urgent = after is not None and bool(
                self.session.scalar(select(Conversation.urgent).where(Conversation.id == after[1]))
            )
            statement = order_waiting_queue(statement, after, urgent)
        else:
            statement = order_by_status_time(statement, after)
        rows = list(self.session.scalars(statement.limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        patients = patient_views(self.session, self.runtime, rows)
        book = self.conversations.claims
        claims = book.views(actor, book.live_of(row.id for row in rows))
        items = []
        for conversation in rows:
            # A conversation that fails an integrity check is shown without content and
            # audited as refused, and the queue is served (``conversation_refusals``).
            view = self.conversations.listed(actor, conversation)
            if view.readable:
                self.conversations.audit_content_read(actor, conversation, "read.queue")
            case = view.for_clinician(patients[conversation.id])
            case.claim = claims.get(conversation.id)
            case.in_review = case.claim is not None
            case.overdue = self._overdue(conversation)
            items.append(case)
        self.with_read_state(actor, items)
        return Page(items, status_position(rows[-1]) if more else None)

    def case(self, actor: Principal, conversation_id: uuid.UUID) -> CaseView:
        """One conversation with its patient view (audited as a read)."""
        self.require_audience(actor)
        view = self.conversations.conversation(actor, conversation_id)
        case = view.for_clinician(patient_view(self.session, self.runtime, view))
        case.claim = self.conversations.claims.view(actor, conversation_id)
        case.in_review = case.claim is not None
        row = self.session.get(Conversation, conversation_id)
        case.overdue = row is not None and self._overdue(row)
        self.with_read_state(actor, [case])
        return case

    def _overdue(self, conversation: Conversation) -> bool:
        """Waiting (open) for longer than the response target: since the member's first
        message after the last answer (``status_since``)."""
        waited = self.conversations.now() - conversation.status_since
        return (
            conversation.status == ConversationStatus.OPEN
            and waited > self.runtime.settings.response_target
        )

    def _locked_open(self, actor: Principal, conversation_id: uuid.UUID) -> Conversation:
        """The conversation, row-checked and locked, refused (409) once closed: claims are
        decided one at a time per conversation (two clinicians racing: one wins)."""
        self.require_audience(actor)
        conversation = self.access.load(actor, conversation_id)
        self.conversations.lock_for_write(conversation)
        self.conversations.require_open(conversation)
        return conversation

    def claim(self, actor: Principal, conversation_id: uuid.UUID) -> ClaimView:
        """Take the question (or renew one's own claim); 409 ``claimed_by_other``."""
        book = self.conversations.claims
        row = book.take(actor, self._locked_open(actor, conversation_id))
        return book.views(actor, {conversation_id: row})[conversation_id]

    def release(self, actor: Principal, conversation_id: uuid.UUID) -> None:
        """Give one's own claim up: the question is back in the queue."""
        self.conversations.claims.release(actor, self._locked_open(actor, conversation_id))

    def hand_over(
        self, actor: Principal, conversation_id: uuid.UUID, to: uuid.UUID, reason: str
    ) -> ClaimView:
        """Hand one's own claim to a named colleague, with a reason code."""
        book = self.conversations.claims
        conversation = self._locked_open(actor, conversation_id)
        row = book.hand_over(actor, conversation, to, reason)
        return book.views(actor, {conversation_id: row})[conversation_id]

    def close(self, actor: Principal, conversation_id: uuid.UUID) -> str:
        """Close the conversation: no more messages from either side. 409 if already closed."""
        self.require_audience(actor)
        conversation = self.access.load(actor, conversation_id)
        self.conversations.lock_for_write(conversation)
        self.conversations.require_open(conversation)
        conversation.closed_at = self.conversations.now()
        conversation.enter(ConversationStatus.CLOSED, conversation.closed_at)
        self.session.flush()
        audit.record(
            self.session,
            "conversation.close",
            target_type="conversation",
            target_id=conversation.id,
            subject_id=conversation.member_id,
        )
        enqueue(self.session, self.runtime, NotificationKind.CLOSED, conversation.member_id)
        return ConversationStatus.CLOSED
