"""Who may open which conversation: the row check first, the key second (SECURITY-MODEL 12).

Holding the physician role key opens every conversation, so the server still checks on each
request that the caller may see the row; cryptography is the second wall. A member asking for
someone else's conversation gets 404, exactly as for one that does not exist.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from access_control.keyring import Keyring
from access_control.principal import Principal
from access_control.roles import Role
from medchat.errors import Forbidden, NotFound
from medchat.models import Conversation, Holder
from medchat.runtime import Runtime


class ConversationAccess:
    def __init__(self, session: Session, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime

    def load(self, actor: Principal, conversation_id: uuid.UUID) -> Conversation:
        """The conversation if ``actor`` may see it; ``NotFound`` otherwise (never 403)."""
        conversation = self.session.get(Conversation, conversation_id)
        if conversation is None:
            raise NotFound
        if actor.role == Role.MEMBER:
            if conversation.member_id != actor.id:
                raise NotFound
        elif actor.role != Role.CLINICIAN:
            raise Forbidden
        return conversation

    def holder_for(self, actor: Principal) -> Holder:
        if actor.role == Role.MEMBER:
            return Holder.MEMBER
        if actor.role == Role.CLINICIAN:
            return Holder.PHYSICIAN
        raise Forbidden

    def open_key(self, actor: Principal, conversation: Conversation) -> bytes:
        """The DEK, opened with a key in the actor's session (after the row check)."""
        return self.dek(conversation, actor.keyring, self.holder_for(actor))

    def dek(self, conversation: Conversation, keyring: Keyring, holder: Holder) -> bytes:
        return self.runtime.conversation_keys(self.session).open_key(conversation, keyring, holder)
