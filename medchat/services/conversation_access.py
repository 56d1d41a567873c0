"""Who may open which conversation: the row check first, the key second (SECURITY-MODEL 12).

Holding the physician role key opens every conversation, so the server still checks on each
request that the caller may see the row; cryptography is the second wall. A member asking for
someone else's conversation gets 404, exactly as for one that does not exist. A clinician whose
session holds no physician role key (never granted, or signed in before the grant) is told so
(403 ``role_key_required``) before any row is looked at, rather than failing on the unwrap.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from access_control.keyring import Keyring
from access_control.principal import Principal
from access_control.roles import Role
from medchat.errors import Forbidden, NotFound, RoleKeyRequired
from medchat.models import Conversation, Holder, KeyRole
from medchat.runtime import Runtime


class ConversationAccess:
    def __init__(self, session: Session, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime

    def load(self, actor: Principal, conversation_id: uuid.UUID) -> Conversation:
        """The conversation if ``actor`` may see it; ``NotFound`` otherwise (never 403).

        A clinician without the physician role key in their session gets ``RoleKeyRequired``.
        """
        if actor.role == Role.CLINICIAN:
            self.require_role_key(actor)
        conversation = self.session.get(Conversation, conversation_id)
        if conversation is None:
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
        """The DEK, opened with a key in the actor's session (after the row check)."""
        return self.dek(conversation, actor.keyring, self.holder_for(actor))

    def dek(self, conversation: Conversation, keyring: Keyring, holder: Holder) -> bytes:
        return self.runtime.conversation_keys(self.session).open_key(conversation, keyring, holder)
