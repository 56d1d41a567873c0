"""The re-wrap queue from a test's side: a member's password reset (which queues each of their
live conversations), a member with a history to reset, a drain, what is pending, and the
member wraps a drain leaves.

``tests/unit/services/test_rewrap.py`` tests the queue as a whole, ``test_rewrap_steps.py`` step
by step; both start from these.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from access_control import crypto
from access_control.roles import Role
from medchat.keys.member_rewrap import RewrapQueue
from medchat.models import Conversation, ConversationKeyWrap, PasswordResetToken
from medchat.services.context import ServiceContext
from medchat.services.password_reset import PasswordResetService
from tests.support.accounts import Person, make_member
from tests.support.conversations import start_conversation
from tests.support.sessions import sign_in

NEW_PASSWORD = "lichen-tundra-pelican-86"


def reset(runtime: ServiceContext, person: Person, password: str = NEW_PASSWORD) -> Person:
    """The member's reset through ``PasswordResetService.confirm`` with a token we planted."""
    token = f"mcp_{uuid.uuid4().hex}"
    now = runtime.clock.now()
    with runtime.database.transaction() as session:
        session.add(
            PasswordResetToken(
                account_id=person.id,
                token_hash=crypto.token_hash(token),
                created_at=now,
                expires_at=now + timedelta(minutes=30),
            )
        )
    with runtime.database.transaction() as session:
        PasswordResetService(session, runtime).confirm(token, password, None)
    return Person(person.id, person.email, password, Role.MEMBER)


def with_history(runtime: ServiceContext, conversations: int = 2) -> tuple[Person, list]:
    """A member and their started conversations (subject and one message each)."""
    member = make_member(runtime)
    principal = sign_in(runtime, member).principal
    started = [
        start_conversation(runtime, principal, subject=f"Subject {n}", bodies=[f"Body {n}"])
        for n in range(conversations)
    ]
    return member, started


def drain(runtime: ServiceContext, actor: Any, limit: int = 100) -> Any:
    """One drain of the queue by ``actor`` (a signed-in principal), in its own transaction."""
    with runtime.database.transaction() as session:
        return RewrapQueue(session, runtime).drain(actor, limit)


def pending(runtime: ServiceContext) -> int:
    """How many re-wrap requests wait."""
    with runtime.database.transaction() as session:
        return RewrapQueue(session, runtime).pending()


def member_wraps(runtime: ServiceContext, member_id: Any) -> list[ConversationKeyWrap]:
    """Every member-held wrap of this member's conversations."""
    with runtime.database.transaction() as session:
        return list(
            session.scalars(
                select(ConversationKeyWrap)
                .join(Conversation, Conversation.id == ConversationKeyWrap.conversation_id)
                .where(Conversation.member_id == member_id, ConversationKeyWrap.holder == "member")
            )
        )
