"""The member re-wrap queue: after a password reset, history is re-sealed by a clinician session.

SECURITY-MODEL key hierarchy 7. A reset gives the member a new personal keypair; the old
private key is gone with the old password, so the member wraps of their conversations no longer
open. Nothing on the server may hold a key that could re-seal them, so each conversation waits
as a ``RewrapRequest`` until a session that holds the physician role key opens the DEK through
the physician wrap (commitment checked) and seals it to the member's new, verified public key;
every key epoch of the conversation (``medchat.keys.epochs``), so the whole history reads again.
(Content written after the reset is under a new epoch, begun at its first seal for the new key
only: the old password opens none of it.)

- ``enqueue`` (the reset): the member wraps sealed to the old key are deleted at once, so at no
  point is a DEK stored under anything but the physician key, the archive key and the member's
  current key; one request per live conversation names the new key.
- ``drain`` (a clinician's request or the ``medchat keys rewrap`` worker): the oldest requests
  first, up to ``limit``. A request is an instruction to seal a DEK, so it is trusted for
  nothing: its row tag must verify (``medchat.storage.row_integrity``; a planted or altered request
  is refused, audited and dropped), and the key it seals to is derived again from verified
  facts alone: the member the conversation's key set is tagged for, and that member's current
  key, which must verify its own integrity tag. A request whose key is no longer the member's
  current key was superseded by a later reset and is dropped (the later reset queued its own).
  Each request is done in a SAVEPOINT: a conversation that fails its integrity checks stays
  queued, is logged, and does not stop the others. On PostgreSQL the requests are taken
  ``FOR UPDATE SKIP LOCKED``, so two clinician sessions draining at once never process one
  request twice; SQLite serialises every unit of work (``BEGIN IMMEDIATE``).
- ``drain_quietly``: the same inside a SAVEPOINT of a clinician's own request; any failure is
  logged and rolled back, never turned into a failure of that request.

Each re-seal is audited as ``conversation.rewrap`` with the member as subject. The one that
finishes a member's last request also deletes the member's retired keys nothing is sealed to
any more (``PersonalKeys.forget_retired``; their blobs open with an old password).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat import audit
from medchat.errors import KeyIntegrityFailure, NotFound, RoleKeyRequired
from medchat.identity.principal import Principal
from medchat.models import (
    LIVE_STATUSES,
    Conversation,
    ConversationKeyWrap,
    Holder,
    KeyRole,
    PersonalKey,
    RewrapRequest,
)
from medchat.storage.row_integrity import is_tampered, skip_tampered, tag_values

if TYPE_CHECKING:  # the service context is passed in; importing it would run back up a layer
    from medchat.services.context import ServiceContext

log = logging.getLogger("medchat.rewrap")

#: The oldest requests first, a tampered one marked instead of refusing the whole query, and
#: on PostgreSQL none that another drain holds (SQLite renders no ``FOR UPDATE``: its writer
#: holds the database's write lock). Built once: a drain runs on every clinician request, and
#: building a statement costs more than running it.
_OLDEST_UNHELD = skip_tampered(
    select(RewrapRequest)
    .order_by(RewrapRequest.created_at, RewrapRequest.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)


@dataclass
class DrainResult:
    """What one drain did: re-sealed, dropped as superseded, left queued (failed or not
    openable with this session's keys)."""

    rewrapped: int = 0
    superseded: int = 0
    skipped: int = 0

    @property
    def progressed(self) -> bool:
        return bool(self.rewrapped or self.superseded)

    def add(self, other: DrainResult) -> None:
        self.rewrapped += other.rewrapped
        self.superseded += other.superseded
        self.skipped += other.skipped


@contextmanager
def audited_savepoint(session: Session) -> Iterator[None]:
    """A SAVEPOINT whose rollback also forgets the audit entries recorded inside it.

    Audit entries are queued in ``session.info`` and appended at commit; a rolled-back
    savepoint must not leave an entry claiming a re-seal that was undone.
    """
    pending = session.info.setdefault("audit_pending", [])
    mark = len(pending)
    try:
        with session.begin_nested():
            yield
    except BaseException:
        del session.info.setdefault("audit_pending", [])[mark:]
        raise


class RewrapQueue:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime

    def pending(self, member_id: uuid.UUID | None = None) -> int:
        """How many requests wait (for one member, or in all)."""
        statement = select(func.count()).select_from(RewrapRequest)
        if member_id is not None:
            statement = statement.where(RewrapRequest.member_id == member_id)
        return self.session.scalar(statement) or 0

    def enqueue(self, member_id: uuid.UUID, key: PersonalKey) -> int:
        """Queue every live conversation of the member for ``key``; return how many.

        Deletes the member wraps sealed to earlier keys (they can no longer open, and must
        not stay as wraps to a key that is not current) and any request for an earlier key.
        """
        conversations = select(Conversation.id).where(
            Conversation.member_id == member_id, Conversation.status.in_(LIVE_STATUSES)
        )
        self.session.execute(delete(RewrapRequest).where(RewrapRequest.member_id == member_id))
        self.session.execute(
            delete(ConversationKeyWrap).where(
                ConversationKeyWrap.holder == Holder.MEMBER,
                ConversationKeyWrap.conversation_id.in_(
                    select(Conversation.id).where(Conversation.member_id == member_id)
                ),
            )
        )
        now = self.runtime.clock.now()
        rows = [
            {
                "id": uuid.uuid4(),
                "conversation_id": conversation_id,
                "member_id": member_id,
                "personal_key_id": key.id,
                "created_at": now,
            }
            for conversation_id in self.session.scalars(conversations)
        ]
        for row in rows:
            row["row_tag"] = tag_values(self.session, RewrapRequest, row)
        if rows:
            self.session.execute(insert(RewrapRequest), rows)
        return len(rows)

    def drain(self, actor: Principal, limit: int) -> DrainResult:
        """Re-seal up to ``limit`` of the oldest requests with the actor's physician key.

        Raises ``RoleKeyRequired`` unless the actor is a clinician whose session holds the
        physician role key. Failures of single requests are logged and leave them queued.
        """
        if actor.role != Role.CLINICIAN or not actor.keyring.holds_role(KeyRole.PHYSICIAN):
            raise RoleKeyRequired
        result = DrainResult()
        if limit <= 0:
            return result
        for request in list(self.session.scalars(_OLDEST_UNHELD, {"limit": limit})):
            if is_tampered(request):
                # Planted or altered (refused and audited on load): never acted on, dropped.
                self.session.expunge(request)
                self.session.execute(delete(RewrapRequest).where(RewrapRequest.id == request.id))
                result.skipped += 1
                continue
            try:
                with audited_savepoint(self.session):
                    outcome = self._rewrap(actor, request)
            except (KeyIntegrityFailure, NotFound) as exc:
                # NotFound: no physician wrap this session can open (e.g. a version it was
                # not granted). KeyIntegrityFailure: altered rows; the request stays for
                # someone to look at, and the other requests go on.
                log.error(
                    "re-wrap of conversation %s left queued: %s",
                    request.conversation_id,
                    type(exc).__name__,
                )
                result.skipped += 1
                continue
            if outcome:
                result.rewrapped += 1
            else:
                result.superseded += 1
        return result

    def drain_quietly(self, actor: Principal, limit: int) -> DrainResult | None:
        """``drain`` inside the caller's unit of work, never failing it.

        For a clinician's own request: whatever goes wrong here is rolled back to the
        savepoint and logged, and the request answers as if nothing had been tried.
        """
        try:
            with audited_savepoint(self.session):
                return self.drain(actor, limit)
        except Exception:
            log.exception("the re-wrap drain failed; the clinician's request is unaffected")
            return None

    def _drop(self, request: RewrapRequest) -> bool:
        self.session.delete(request)
        self.session.flush()
        return False

    def _rewrap(self, actor: Principal, request: RewrapRequest) -> bool:
        """Re-seal one conversation; False when the request was superseded (dropped)."""
        custody = self.runtime.custody(self.session)
        keys = self.runtime.conversation_keys(self.session)
        conversation = self.session.get(Conversation, request.conversation_id)
        if conversation is None or conversation.status not in LIVE_STATUSES:
            # A sealed conversation has no member wrap; a destroyed one nothing at all.
            return self._drop(request)
        # The recipient comes from verified facts, never from the request: the member the
        # key set is tagged for, and that member's current key, tag checked.
        keys.verify_conversation(conversation)
        current = custody.personal_key(conversation.member_id)
        if (
            current is None
            or request.member_id != conversation.member_id
            or current.id != request.personal_key_id
        ):
            # A later reset queued its own request.
            return self._drop(request)
        member_key = custody.verified_personal_key(conversation.member_id)
        # Every key epoch: the member reads the whole history again, older epochs included.
        deks = keys.open_key(conversation, actor.keyring, Holder.PHYSICIAN)
        # Wraps sealed to keys that are not the member's current one open nothing any more.
        self.session.execute(
            delete(ConversationKeyWrap).where(
                ConversationKeyWrap.conversation_id == conversation.id,
                ConversationKeyWrap.holder == Holder.MEMBER,
                ConversationKeyWrap.recipient_key_id != member_key.key_id,
            )
        )
        present = set(
            self.session.scalars(
                select(ConversationKeyWrap.epoch).where(
                    ConversationKeyWrap.conversation_id == conversation.id,
                    ConversationKeyWrap.holder == Holder.MEMBER,
                    ConversationKeyWrap.recipient_key_id == member_key.key_id,
                )
            )
        )
        for epoch in deks.epochs():
            if epoch in present:
                continue
            keys.add_wrap(
                conversation,
                deks.of(epoch),
                Holder.MEMBER,
                conversation.member_id,
                member_key.public_key,
                member_key.key_id,
                self.runtime.clock.now(),
                epoch=epoch,
            )
        self.session.delete(request)
        self.session.flush()
        if not self.pending(conversation.member_id):
            # The member's last request: no wrap is left sealed to a retired key of theirs,
            # so those keys (which their old passwords open) go.
            custody.forget_retired(conversation.member_id)
        audit.record(
            self.session,
            "conversation.rewrap",
            target_type="conversation",
            target_id=conversation.id,
            subject_id=conversation.member_id,
            details={"holder": str(Holder.MEMBER)},
        )
        return True
