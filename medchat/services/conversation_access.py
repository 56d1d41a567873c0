"""Who may open which conversation: the row check first, the key second (SECURITY-MODEL 12).

Holding the physician role key opens every conversation, so the server still checks on each
request that the caller may see the row; cryptography is the second wall. A member asking for
someone else's conversation gets 404, exactly as for one that does not exist. A clinician whose
session holds no physician role key (never granted, or signed in before the grant) is told so
(403 ``role_key_required``) before any row is looked at, rather than failing on the unwrap.

A sealed conversation (deleted at the member's request, SECURITY-MODEL "Deletion, sealed
archive") is gone from every member and clinician view: ``load`` answers 404 for it exactly as
for an id that never existed, and every API route, console page and list goes through here or
filters on ``LIVE_STATUSES``. Only the compliance archive reaches it, through an approved
retrieval (``medchat.services.retrieval``).

A member's own conversation whose DEK their session cannot open is one whose history waits in
the re-wrap queue after a password reset (SECURITY-MODEL key hierarchy 7): that is answered
here, once, as 409 ``history_pending`` (the row check has passed, so it reveals nothing).
"""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from access_control.keyring import Keyring
from access_control.principal import Principal
from access_control.roles import Role
from medchat.errors import Forbidden, HistoryPending, NotFound, RoleKeyRequired
from medchat.models import Conversation, ConversationStatus, Holder, KeyRole
from medchat.runtime import Runtime

#: What members and clinicians may see; a sealed conversation is not live (404 everywhere).
LIVE_STATUSES = (ConversationStatus.OPEN, ConversationStatus.ANSWERED, ConversationStatus.CLOSED)

_LOAD = select(Conversation).where(Conversation.id == bindparam("conversation_id"))
#: A write reads the row fresh and locked (``SELECT ... FOR UPDATE``; SQLite ignores it).
_LOAD_FOR_UPDATE = _LOAD.with_for_update().execution_options(populate_existing=True)


class ConversationAccess:
    def __init__(self, session: Session, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime

    def load(
        self, actor: Principal, conversation_id: uuid.UUID, *, for_update: bool = False
    ) -> Conversation:
        """The conversation if ``actor`` may see it; ``NotFound`` otherwise (never 403), and
        for a sealed one whoever asks.

        ``for_update`` reads the row with ``SELECT ... FOR UPDATE`` (PostgreSQL; SQLite holds
        the write lock already), so a write locks and re-reads it in one statement.
        A clinician without the physician role key in their session gets ``RoleKeyRequired``.
        """
        if actor.role == Role.CLINICIAN:
            self.require_role_key(actor)
        conversation = self.session.scalar(
            _LOAD_FOR_UPDATE if for_update else _LOAD, {"conversation_id": conversation_id}
        )
        if conversation is None or conversation.status not in LIVE_STATUSES:
            raise NotFound
        if actor.role == Role.MEMBER:
            if conversation.member_id != actor.id:
                raise NotFound
        elif actor.role != Role.CLINICIAN:
            raise Forbidden
        return conversation

    @staticmethod
    def require_role_key(actor: Principal) -> None:
        """Raise ``RoleKeyRequired`` unless a clinician's session holds the physician key."""
        if not actor.keyring.holds_role(KeyRole.PHYSICIAN):
            raise RoleKeyRequired

    def holder_for(self, actor: Principal) -> Holder:
        if actor.role == Role.MEMBER:
            return Holder.MEMBER
        if actor.role == Role.CLINICIAN:
            return Holder.PHYSICIAN
        raise Forbidden

    def open_key(self, actor: Principal, conversation: Conversation) -> bytes:
        """The DEK, opened with a key in the actor's session (after the row check).

        Raises ``HistoryPending`` when a member's session holds no key with a wrap here yet:
        after a password reset the history is re-sealed to the new key by a clinician's
        session (``medchat.services.rewrap``), never by a key the server holds.
        """
        holder = self.holder_for(actor)
        try:
            return self.dek(conversation, actor.keyring, holder)
        except NotFound:
            if holder is Holder.MEMBER:
                raise HistoryPending from None
            raise

    def dek(self, conversation: Conversation, keyring: Keyring, holder: Holder) -> bytes:
        return self.runtime.conversation_keys(self.session).open_key(conversation, keyring, holder)
