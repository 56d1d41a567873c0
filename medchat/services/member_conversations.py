"""The member's side of conversations: ask a question, list, read and write their own.

API.md "Member". A member sees only their own conversations (anyone else's is a 404, as for
one that does not exist: ``ConversationAccess``). Asking needs current consent to health
messaging and the role keys (``keys init``): the new conversation's DEK is sealed at once to
the physician role, the member and the compliance archive. Subject and body are content,
sealed under that DEK; ``Idempotency-Key`` makes a retried question return the first
conversation instead of a second one. Members' own reads are not audited (it is their data);
each question is.

After a password reset the member's earlier conversations wait for a clinician session to
re-seal them (``medchat.keys.member_rewrap``): the list still shows them, with ``readable`` false
and no subject, and opening one answers 409 ``history_pending`` (``ConversationAccess``). A
conversation that fails an integrity check is listed the same way (``unavailable``
``integrity_failed``, audited) and opening it answers 409 ``key_integrity_failed``
(``conversation_refusals``).
"""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select

from access_control.roles import Role
from medchat import audit
from medchat.errors import Forbidden, NotAuthenticated
from medchat.identity.principal import Principal
from medchat.keys.sealing import ContentKey
from medchat.models import Account, AccountStatus, Conversation, ConversationStatus
from medchat.services import conversation_access
from medchat.services.conversation_front import ConversationFront
from medchat.services.conversation_pages import (
    ActivityPosition,
    Page,
    activity_position,
    order_by_activity,
)
from medchat.services.conversation_views import ConversationView
from medchat.services.idempotency import Created
from medchat.services.restrictions import RestrictionService

#: Idempotency scope of a question: a key used to ask cannot replay as a message.
START_SCOPE = "conversation.start"
#: What a member's list shows (defined with the row check; re-exported for the re-wrap queue).
LIVE_STATUSES = conversation_access.LIVE_STATUSES


_ACCOUNT_STATUS = select(Account.status).where(Account.id == bindparam("account_id"))


class MemberConversationService(ConversationFront):
    """A member's front; paging messages and sending are ``ConversationFront``'s."""

    def require_audience(self, actor: Principal) -> None:
        if actor.role != Role.MEMBER:
            raise Forbidden

    def start(
        self,
        actor: Principal,
        *,
        subject: str | None,
        body: str,
        idempotency_key: str | None = None,
        urgent: bool = False,
        notice_version: str | None = None,
    ) -> Created[ConversationView]:
        """Ask a question: a new open conversation, its keys, and the first message.

        Raises ``ConsentRequired`` without current consent (``ConsentOutdated`` when it names
        an older text), ``KeysNotInitialized`` before
        ``keys init`` and ``Conflict`` for an ``Idempotency-Key`` used on another request.
        ``notice_version``: the emergency notice the member acknowledged (the request schema
        requires the current one); ``urgent`` sorts the question first in the open queue.
        """
        self.require_audience(actor)
        conversations = self.conversations
        conversation_id = uuid.uuid4()
        if idempotency_key is not None:
            payload = {"subject": subject, "body": body}
            first = conversations.idempotency.claim(
                actor, idempotency_key, START_SCOPE, payload, conversation_id
            )
            if first is not None:
                return Created(self._started_view(actor, first), replayed=True)
        conversations.consent.require_current_version(actor.id)
        RestrictionService(self.session, self.runtime).require_unrestricted(actor.id)
        now = conversations.now()
        conversation = Conversation(
            id=conversation_id,
            member_id=actor.id,
            status=ConversationStatus.OPEN,
            message_count=0,
            created_at=now,
            last_message_at=now,
            status_since=now,
            urgent=urgent,
            notice_version=notice_version,
        )
        dek = self.runtime.conversation_keys(self.session).new_key(conversation, now)
        if subject is not None:
            # The subject is content: sealed with the conversation itself as its row.
            key = ContentKey.for_conversation(dek, conversation)
            conversation.subject_ciphertext = key.seal_subject(subject)
        self.session.add(conversation)
        self.session.flush()
        self._require_account_still_active(actor)
        message = conversations.append_message(conversation, dek, actor, body)
        audit.record(
            self.session,
            "conversation.start",
            target_type="conversation",
            target_id=conversation.id,
            subject_id=actor.id,
            details={"message_id": str(message.id)},
        )
        view = conversations.conversation_view(conversation, dek)
        view.messages = conversations.message_views(conversation, dek, [message])
        return Created(view)

    def _require_account_still_active(self, actor: Principal) -> None:
        """Re-read the account after the conversation row went in (``NotAuthenticated`` if it
        is no longer active).

        An account deletion locks the account row first; the new row's foreign-key check
        waits for that lock, so once it is through, this statement sees a deletion that
        committed meanwhile: a question sent from another device in the same instant is
        refused instead of staying live for an erased account. (A deletion that starts
        after this point waits for this transaction, then seals the new conversation.)
        """
        status = self.session.scalar(_ACCOUNT_STATUS, {"account_id": actor.id})
        if status != AccountStatus.ACTIVE:
            raise NotAuthenticated

    def _started_view(self, actor: Principal, conversation_id: uuid.UUID) -> ConversationView:
        """The answer to a replayed question, rebuilt from the rows (nothing was stored)."""
        conversation, dek = self.conversations.open(actor, conversation_id)
        view = self.conversations.conversation_view(conversation, dek)
        first = self.conversations.message_page(conversation, dek, limit=1, ascending=True)
        view.messages = first.items
        return view

    def list_own(
        self, actor: Principal, *, limit: int, after: ActivityPosition | None = None
    ) -> Page[ConversationView, ActivityPosition]:
        """The member's conversations, newest activity first, from the position ``after``."""
        self.require_audience(actor)
        statement = select(Conversation).where(
            Conversation.member_id == actor.id, Conversation.status.in_(LIVE_STATUSES)
        )
        statement = order_by_activity(statement, after, descending=True)
        rows = list(self.session.scalars(statement.limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        # Each item decrypted, or listed without content while its re-wrap is pending or
        # when it fails an integrity check (refused and audited: ``conversation_refusals``).
        items = [self.conversations.listed(actor, conversation) for conversation in rows]
        self._mark_in_review(items)
        self.with_read_state(actor, items)
        return Page(items, activity_position(rows[-1]) if more else None)

    def conversation(self, actor: Principal, conversation_id: uuid.UUID) -> ConversationView:
        """One of the member's conversations (``NotFound`` for anyone else's)."""
        self.require_audience(actor)
        view = self.conversations.conversation(actor, conversation_id)
        self._mark_in_review([view])
        self.with_read_state(actor, [view])
        return view

    def _mark_in_review(self, views: list[ConversationView]) -> None:
        """ "A doctor is looking at your question": a live claim, and nothing of whose."""
        live = self.conversations.claims.live_of(view.id for view in views)
        for view in views:
            view.in_review = view.id in live
