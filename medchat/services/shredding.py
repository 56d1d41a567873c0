"""Crypto-shredding: a conversation's ciphertexts and every wrap of its key go together.

SECURITY-MODEL "Deletion, sealed archive, retention": retention destroys a conversation by
deleting its wraps (no holder's key opens its DEK any more) and its ciphertexts (nothing is
left to open). ``destroy`` deletes, for a batch of conversations, every row that hangs off
them: queued re-wraps, key wraps of every holder, read markers, ``Idempotency-Key`` records,
attachments, messages, then the conversation rows themselves (subject ciphertext, key
commitment). The deletes are explicit rather than left to ``ON DELETE CASCADE``, so the
counts are known and the rows without a foreign key (idempotency records) go too. The archive
ledger is never touched here: a sealed record stays, and its "destroyed" record is the
caller's to append.

Locks (PostgreSQL): the caller holds the conversation rows (``FOR UPDATE``). A role-key
rotation or a re-wrap drain deletes a wrap or a queued re-wrap first and then inserts a new
wrap, whose foreign-key check needs the conversation row: were retention to wait for their
rows while holding the conversation, the two would deadlock. ``destroy_unless_busy`` tries the
deletes in a savepoint with a short ``lock_timeout`` (shorter than PostgreSQL's deadlock
timeout, so it is always retention that backs off, never the rotation); only when that times
out does it lock the wraps and re-wraps ``SKIP LOCKED`` (``lock_free``), name the conversations
another transaction is busy with, and destroy the others. Locking every wrap up front instead
cost a third of the run (they are rewritten twice: locked, then deleted). Messages,
attachments and markers are written only under the conversation's row lock.

On PostgreSQL a batch's ids travel as one array parameter (``= ANY(...)``) rather than one
parameter each, which keeps the statements small to build, send and plan.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, Uuid, and_, any_, bindparam, delete, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from medchat.errors import Conflict
from medchat.models import (
    Attachment,
    Conversation,
    ConversationClaim,
    ConversationDraft,
    ConversationKeyWrap,
    ConversationRead,
    IdempotencyRecord,
    Message,
    RewrapRequest,
)
from medchat.services.attachments import upload_scope
from medchat.services.conversations import message_scope
from medchat.services.member_conversations import START_SCOPE

#: How long a delete waits for a row lock before retention backs off (PostgreSQL's
#: ``deadlock_timeout`` is 1 s: this must stay below it).
LOCK_WAIT = "300ms"
#: lock_not_available (``lock_timeout``) and deadlock_detected.
_LOCK_STATES = frozenset({"55P03", "40P01"})


@dataclass(frozen=True)
class Shredded:
    """What was deleted of one conversation (counts only: what the audit entry records)."""

    messages: int
    attachments: int
    wraps: int


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _among(session: Session, column: Any, values: list[Any], type_: Any = None) -> Any:
    """``column IN values``: one array parameter on PostgreSQL, a list elsewhere."""
    if _postgresql(session):
        return column == any_(bindparam(None, values, type_=ARRAY(type_ or Uuid())))
    return column.in_(values)


def lock_free(session: Session, conversation_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """The conversations none of whose wraps or queued re-wraps another transaction holds.

    The caller holds the conversation rows already, so no new wrap or re-wrap can appear for
    them (its foreign-key check waits); what is locked now is locked by a rotation or a drain
    that started first. On SQLite the write lock serialises everything: all are free.
    """
    ids = list(conversation_ids)
    if not ids or not _postgresql(session):
        return set(ids)
    busy: set[uuid.UUID] = set()
    for model in (ConversationKeyWrap, RewrapRequest):
        of_these = _among(session, model.conversation_id, ids)
        rows = session.execute(select(model.id, model.conversation_id).where(of_these)).all()
        if not rows:
            continue
        locked = set(
            session.scalars(select(model.id).where(of_these).with_for_update(skip_locked=True))
        )
        busy.update(row.conversation_id for row in rows if row.id not in locked)
    return set(ids) - busy


def _delete_returning(session: Session, model: Any, ids: list[uuid.UUID]) -> Counter[uuid.UUID]:
    deleted = session.scalars(
        delete(model)
        .where(_among(session, model.conversation_id, ids))
        .returning(model.conversation_id)
        .execution_options(synchronize_session=False)
    )
    return Counter(deleted)


def _delete(session: Session, statement: Any) -> None:
    session.execute(statement.execution_options(synchronize_session=False))


def destroy(session: Session, conversation_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Shredded]:
    """Delete the conversations and everything that hangs off them, in this transaction.

    The caller holds their row locks and uses no ``Conversation`` object of theirs afterwards.
    Raises ``Conflict`` when a conversation row is gone already (another transaction destroyed
    it: the caller's lock was not held).
    """
    ids = list(conversation_ids)
    if not ids:
        return {}
    _delete(
        session,
        delete(RewrapRequest).where(_among(session, RewrapRequest.conversation_id, ids)),
    )
    wraps = _delete_returning(session, ConversationKeyWrap, ids)
    _delete(
        session,
        delete(ConversationRead).where(_among(session, ConversationRead.conversation_id, ids)),
    )
    _delete(
        session,
        delete(ConversationClaim).where(_among(session, ConversationClaim.conversation_id, ids)),
    )
    scopes = [scope(i) for i in ids for scope in (message_scope, upload_scope)]
    _delete(
        session,
        delete(IdempotencyRecord).where(
            or_(
                _among(session, IdempotencyRecord.scope, scopes, String()),
                and_(
                    IdempotencyRecord.scope == START_SCOPE,
                    _among(session, IdempotencyRecord.resource_id, ids),
                ),
            )
        ),
    )
    _delete(
        session,
        delete(ConversationDraft).where(_among(session, ConversationDraft.conversation_id, ids)),
    )
    attachments = _delete_returning(session, Attachment, ids)
    messages = _delete_returning(session, Message, ids)
    gone = set(
        session.scalars(
            delete(Conversation)
            .where(_among(session, Conversation.id, ids))
            .returning(Conversation.id)
            .execution_options(synchronize_session=False)
        )
    )
    if gone != set(ids):
        raise Conflict("a conversation to destroy was destroyed by another transaction")
    # Conversation objects the caller loaded stay in the session, unchanged (nothing flushes
    # them): the caller must not use them again after this.
    return {i: Shredded(messages[i], attachments[i], wraps[i]) for i in ids}


def destroy_unless_busy(
    session: Session, conversation_ids: Sequence[uuid.UUID]
) -> tuple[dict[uuid.UUID, Shredded], set[uuid.UUID]]:
    """``destroy`` the conversations another transaction is not busy with; (what was
    destroyed, the busy ones left alone). The caller holds the conversation rows."""
    ids = list(conversation_ids)
    if not ids or not _postgresql(session):
        return destroy(session, ids), set()
    try:
        with session.begin_nested():
            # SET LOCAL inside the savepoint: undone with it if it is rolled back.
            session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
            shredded = destroy(session, ids)
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) not in _LOCK_STATES:
            raise
        free = lock_free(session, ids)
        return destroy(session, [i for i in ids if i in free]), set(ids) - free
    # The ledger and audit heads are waited for as long as it takes.
    session.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
    return shredded, set()
