"""Conversations and messages: the member asks, a doctor answers, everything sealed.

Every read opens the conversation's DEK with a key from the caller's session (after the row
check of ``ConversationAccess``) and every write seals under it; no content is ever stored or
logged in clear. Turning rows and a DEK into views (subject, message pages, attachments'
metadata) is ``ConversationReader``'s, in ``message_views``. Reads of content by a clinician
are audited, naming the member as the subject (their access log reads it).

The flows below the building blocks serve members and clinicians alike (the row check of
``ConversationAccess`` decides what each may open): read one conversation, page its
messages, send. No new message enters a conversation whose member has no current consent
(``ConsentService``), or that is closed. Sends honour ``Idempotency-Key``
(``IdempotencyService``): a retry replays the first result, rebuilt from the stored row.
Each audience has its own front: ``member_conversations`` (ask, list own) and
``clinician_conversations`` (queue, close, the patient view).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from access_control.roles import Role
from medchat import audit
from medchat.db import time_ordered_id
from medchat.errors import Conflict, ConsentRequired, HistoryPending, NotFound
from medchat.identity.principal import Principal
from medchat.keys.epochs import ConversationDeks
from medchat.keys.sealing import ContentKey
from medchat.models import (
    Conversation,
    ConversationRecord,
    ConversationRow,
    ConversationStatus,
    Message,
    NotificationKind,
)
from medchat.services.claims import ClaimBook
from medchat.services.consent import ConsentService
from medchat.services.context import ServiceContext
from medchat.services.conversation_access import ConversationAccess
from medchat.services.conversation_pages import Page
from medchat.services.conversation_refusals import (
    INTEGRITY_FAILED,
    INTEGRITY_FAILURES,
    refuse_listed,
    refusing,
)
from medchat.services.conversation_views import ConversationView, MessageView
from medchat.services.display_names import display_names
from medchat.services.idempotency import Created, IdempotencyService
from medchat.services.message_append import write_at_next_seq
from medchat.services.message_views import ConversationReader
from medchat.services.notifications import enqueue
from medchat.services.patient_view import sees_upload_names


def message_scope(conversation_id: uuid.UUID) -> str:
    """Idempotency scope of a send: a key used in one conversation cannot replay in another."""
    return f"message.send:{conversation_id}"


#: Every message of a conversation in order (the export reads them all at once).
_ALL_MESSAGES = (
    select(Message).where(Message.conversation_id == bindparam("id")).order_by(Message.seq)
)


class ConversationService(ConversationReader):
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        super().__init__(session)
        self.runtime = runtime
        self.access = ConversationAccess(session, runtime)
        self.consent = ConsentService(session, runtime)
        self.idempotency = IdempotencyService(session, runtime)
        self.claims = ClaimBook(session, runtime)

    # -- building blocks ---------------------------------------------------------------------

    def now(self) -> datetime:
        return self.runtime.clock.now()

    def append_message(
        self,
        conversation: ConversationRow,
        dek: ConversationDeks,
        actor: Principal,
        body: str,
        *,
        message_id: uuid.UUID | None = None,
    ) -> Message:
        """Add a message at the next sequence number and move the conversation's status.

        The body is sealed under a fresh key epoch (``ConversationAccess.ready_to_seal``,
        which may start one, adding it to ``dek`` for what the caller seals next, and refuses
        with ``RotationOverdue`` past a role key's rotation deadline).

        The conversation row is updated with a single ``UPDATE ... RETURNING``, which also
        serialises concurrent sends to one conversation (no two messages share a number); on
        PostgreSQL the message is inserted by the same statement (the UPDATE as a CTE), with
        the number the caller read the row at (``send`` reads it locked). ``message_id`` is
        given when the id was reserved beforehand (``Idempotency-Key``).
        """
        self.access.ready_to_seal(actor, conversation, dek)
        now = self.now()
        author = "clinician" if actor.role == Role.CLINICIAN else "member"
        status = ConversationStatus.ANSWERED if author == "clinician" else ConversationStatus.OPEN
        # Core statements skip the ORM's autoflush: a conversation just added goes out first.
        self.session.flush()
        message_id = message_id or time_ordered_id(now)
        seq, sealed = write_at_next_seq(
            self.session,
            conversation,
            ContentKey.for_conversation(dek, conversation),
            body,
            message_id=message_id,
            author=author,
            author_id=actor.id,
            now=now,
            status=status,
        )
        if isinstance(conversation, Conversation):
            # The UPDATE above wrote these: record them as committed so the ORM does not
            # write them a second time at flush (a record is no object: nothing to write).
            set_committed_value(conversation, "message_count", seq)
            set_committed_value(conversation, "last_message_at", now)
            if conversation.status != status:
                # Moved with the status only, as the UPDATE does (``Conversation.enter``).
                set_committed_value(conversation, "status_since", now)
            set_committed_value(conversation, "status", status)
        # The caller gets the message as a plain object, not one the session tracks: the row
        # is written, nothing is left for a flush to do.
        message = Message(
            id=message_id,
            conversation_id=conversation.id,
            seq=seq,
            author_role=author,
            author_id=actor.id,
            created_at=now,
            body_ciphertext=sealed,
        )
        return message

    def audit_content_read(
        self, actor: Principal, conversation: ConversationRow, what: str
    ) -> None:
        """Each read of content by a clinician is audited (who, which conversation, when)."""
        if actor.role == Role.MEMBER:
            return
        audit.record(
            self.session,
            f"content.{what}",
            target_type="conversation",
            target_id=conversation.id,
            subject_id=conversation.member_id,
        )

    def require_open(self, conversation: ConversationRow) -> None:
        """Checked after ``lock_for_write``: ``Conflict`` when closed, ``NotFound`` when a
        deletion sealed it while this request waited for the lock (nothing may be added to
        content the archive ledger has hashed)."""
        if conversation.status == ConversationStatus.SEALED:
            raise NotFound
        if conversation.status == ConversationStatus.CLOSED:
            raise Conflict("This conversation is closed.")

    # -- flows ------------------------------------------------------------------------------

    def open(
        self, actor: Principal, conversation_id: uuid.UUID, *, for_update: bool = False
    ) -> tuple[Conversation, ConversationDeks]:
        """Row check, then the DEKs from the actor's session (``NotFound`` if not theirs).

        ``for_update`` locks the row as it is read (writes: see ``lock_for_write``) and reads
        whether its member consents now in the same statement (``require_consent``).
        """
        conversation = self.access.load(
            actor, conversation_id, for_update=for_update, with_consent=for_update
        )
        return conversation, self._key_of(actor, conversation)

    def open_record(
        self, actor: Principal, conversation_id: uuid.UUID, *, for_update: bool = False
    ) -> tuple[ConversationRecord, ConversationDeks]:
        """``open`` for a flow that changes the conversation only through statements (a page
        read, a send): the row checked as columns (``ConversationAccess.check``), no object
        for the session to track."""
        conversation = self.access.check(actor, conversation_id, for_update=for_update)
        return conversation, self._key_of(actor, conversation)

    def _key_of(self, actor: Principal, conversation: ConversationRow) -> ConversationDeks:
        with refusing(self.session, conversation):
            return self.access.open_key(actor, conversation)

    def listed(
        self, actor: Principal, conversation: Conversation, *, with_messages: bool = False
    ) -> ConversationView:
        """One conversation of a list (its row check done by the list's query): decrypted
        (with every message when ``with_messages``), or shown without content while a member's
        history waits for its re-wrap, or refused and audited when it fails an integrity check
        (``conversation_refusals``): one tampered conversation never breaks a list."""
        try:
            dek = self.access.open_key(actor, conversation)
            view = self.conversation_view(conversation, dek)
            if with_messages:
                messages = self.session.scalars(_ALL_MESSAGES, {"id": conversation.id}).all()
                view.messages = self.message_views(
                    conversation, dek, messages, neutral_names=not sees_upload_names(actor.role)
                )
        except HistoryPending:
            return self.unavailable_view(conversation)
        except (*INTEGRITY_FAILURES, NotFound) as error:
            # NotFound reaches here for staff only (a member's becomes HistoryPending): every
            # live conversation has a physician wrap, so one that none of the session's keys
            # opens was tampered with too.
            refuse_listed(self.session, conversation, error)
            return self.unavailable_view(conversation, INTEGRITY_FAILED)
        return view

    def conversation(self, actor: Principal, conversation_id: uuid.UUID) -> ConversationView:
        """One conversation (subject decrypted); a clinician's read is audited."""
        conversation, dek = self.open(actor, conversation_id)
        with refusing(self.session, conversation):
            view = self.conversation_view(conversation, dek)
        self.audit_content_read(actor, conversation, "read.conversation")
        return view

    def messages(
        self,
        actor: Principal,
        conversation_id: uuid.UUID,
        *,
        limit: int,
        cursor: int | None = None,
        ascending: bool = False,
    ) -> Page[MessageView, int]:
        """A page of messages, newest first unless ``ascending``; a clinician's read is audited.

        ``cursor`` is the sequence number the previous page ended on.
        """
        conversation, dek = self.open_record(actor, conversation_id)
        self.audit_content_read(actor, conversation, "read.messages")
        neutral = not sees_upload_names(actor.role)
        with refusing(self.session, conversation):
            if ascending:
                return self.message_page(
                    conversation,
                    dek,
                    limit=limit,
                    after_seq=cursor,
                    ascending=True,
                    neutral_names=neutral,
                )
            return self.message_page(
                conversation, dek, limit=limit, before_seq=cursor, neutral_names=neutral
            )

    def send(
        self,
        actor: Principal,
        conversation_id: uuid.UUID,
        body: str,
        *,
        idempotency_key: str | None = None,
    ) -> Created[MessageView]:
        """Add a message from the member or a clinician.

        The row check comes first (someone else's conversation is a 404 whatever the key);
        then a retry is replayed; then ``Conflict`` if the conversation is closed and
        ``ConsentRequired`` if its member has no current consent; a clinician needs their own
        live claim (``ClaimBook.require_for_answer``: 409 ``claim_required`` or
        ``claimed_by_other``).
        """
        # Locked as it is read: a send never lands after a racing close, in one statement.
        conversation, dek = self.open_record(actor, conversation_id, for_update=True)
        message_id = time_ordered_id(self.now())
        if idempotency_key is not None:
            first = self.idempotency.claim(
                actor,
                idempotency_key,
                message_scope(conversation.id),
                {"body": body},
                message_id,
            )
            if first is not None:
                return Created(self._sent_view(conversation, dek, first), replayed=True)
        self.require_open(conversation)
        self.require_consent(actor, conversation)
        self.claims.require_for_answer(actor, conversation)
        message = self.append_message(conversation, dek, actor, body, message_id=message_id)
        audit.record(
            self.session,
            "message.send",
            target_type="message",
            target_id=message.id,
            subject_id=conversation.member_id,
            details={"conversation_id": str(conversation.id), "author": message.author_role},
        )
        if actor.role == Role.CLINICIAN:
            # The member hears that a doctor answered, never what (services.notifications).
            enqueue(self.session, self.runtime, NotificationKind.REPLY, conversation.member_id)
        return Created(
            MessageView(
                id=message.id,
                author=message.author_role,
                author_name=self._own_name(actor),
                body=body,
                created_at=message.created_at,
                seq=message.seq,
            )
        )

    def _own_name(self, actor: Principal) -> str | None:
        """How the author of a new message is named in the answer (as in a page)."""
        if actor.role != Role.CLINICIAN:
            return None
        return display_names(self.session, [actor.id]).get(actor.id)

    def _sent_view(
        self, conversation: ConversationRow, dek: ConversationDeks, message_id: uuid.UUID
    ) -> MessageView:
        message = self.session.scalar(
            select(Message).where(
                Message.id == message_id, Message.conversation_id == conversation.id
            )
        )
        if message is None:
            raise NotFound
        with refusing(self.session, conversation):
            return self.message_views(conversation, dek, [message])[0]

    def lock_for_write(self, conversation: Conversation) -> None:
        """Lock the row and re-read its status, so a send never lands after a racing close.

        PostgreSQL: ``SELECT ... FOR UPDATE`` waits for a concurrent close or send to commit.
        SQLite: every unit of work holds the write lock already (``BEGIN IMMEDIATE``).
        """
        self.session.refresh(conversation, ["status"], with_for_update=True)

    def require_consent(self, actor: Principal, conversation: ConversationRow) -> None:
        """No new message, from either side, once the member has withdrawn consent; none from
        the member while they restrict processing (a doctor may still answer an open
        question: ``ConversationAccess.load`` refused every other one)."""
        if actor.role == Role.MEMBER:
            self.access.require_unrestricted(conversation)
        try:
            self.consent.require_current(
                conversation.member_id, known=self.access.consent_known(conversation)
            )
        except ConsentRequired:
            if actor.role == Role.MEMBER:
                raise
            raise ConsentRequired("The member has withdrawn consent to health messaging.") from None
