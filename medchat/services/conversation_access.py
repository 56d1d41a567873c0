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

A member who restricted processing (``medchat.services.restrictions``) freezes their
conversations: ``load`` refuses a clinician every one but those still open (403
``processing_restricted``), and writers call ``require_unrestricted``.

A member's own conversation whose DEK their session cannot open is one whose history waits in
the re-wrap queue after a password reset (SECURITY-MODEL key hierarchy 7): that is answered
here, once, as 409 ``history_pending`` (the row check has passed, so it reveals nothing).

Before new content is sealed, ``ready_to_seal`` makes sure the conversation's current key epoch
may still be sealed to, and starts a new one if not (``medchat.keys.epochs``), and refuses a
seal to a role key past its rotation deadline (``medchat.keys.rotation_deadline``). What it decides
from is read with the locked row, in the same statement, so a send costs no extra round trip.
"""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from access_control.keyring import Keyring
from access_control.roles import Role
from medchat.db_driver import DriverStatement, read_outside_transaction
from medchat.errors import Forbidden, HistoryPending, NotFound, RoleKeyRequired
from medchat.identity.principal import Principal
from medchat.keys.epochs import (
    ConversationDeks,
    EpochWraps,
    SealingFacts,
    current_epoch,
)
from medchat.keys.rotation_deadline import require_sealable
from medchat.models import (
    LIVE_STATUSES,
    RECORD_COLUMNS,
    Conversation,
    ConversationKeyEpoch,
    ConversationRecord,
    ConversationRow,
    ConversationStatus,
    Holder,
    KeyRole,
)
from medchat.services.context import ServiceContext
from medchat.services.restrictions import RestrictionService
from medchat.services.row_check_prefetch import prefetched_row_check
from medchat.services.row_check_statements import EPOCH_COLUMNS, FACT_NAMES, LOADS, row_check
from medchat.storage.row_integrity import verify_columns


def _check_statement(*, for_update: bool) -> DriverStatement:
    """``row_check`` through the driver; a plain read runs outside a transaction."""
    return DriverStatement(row_check(for_update=for_update), outside_transaction=not for_update)


_CHECKS = {for_update: _check_statement(for_update=for_update) for for_update in (False, True)}
#: Where ``check``'s rows hold what: the wrap, the epoch row, then the columns of
#: ``row_check_statements._decided_by``.
_WRAP = len(RECORD_COLUMNS)
_EPOCH = _WRAP + 3
_CURRENT = _EPOCH + len(EPOCH_COLUMNS)
_EPOCH_ID = _EPOCH + EPOCH_COLUMNS.index("id")
_RESTRICTED, _CONSENTS, _FACTS = _CURRENT + 1, _CURRENT + 2, _CURRENT + 3


#: The conversation row, locked (SQLite: the unit of work holds the write lock already).
_LOCK = (
    select(Conversation.id).where(Conversation.id == bindparam("conversation_id")).with_for_update()
)

#: The holder whose wraps a role opens (members their own, clinicians the physician role's).
HOLDERS: dict[str, Holder] = {Role.MEMBER: Holder.MEMBER, Role.CLINICIAN: Holder.PHYSICIAN}


class ConversationAccess:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime
        #: Read with the row by ``load``: conversation id -> (holder, its wraps by epoch).
        self._wraps: dict[uuid.UUID, tuple[Holder, EpochWraps]] = {}
        #: Read with the row by ``load(with_consent=True)``: conversation id -> consents now.
        self._consents: dict[uuid.UUID, bool] = {}
        #: Read with the row by ``load(for_update=True)``: what ``ready_to_seal`` decides from.
        self._facts: dict[uuid.UUID, SealingFacts] = {}
        #: Read with the row by ``load``: conversation id -> its member restricted processing.
        self._restricted: dict[uuid.UUID, bool] = {}

    def load(
        self,
        actor: Principal,
        conversation_id: uuid.UUID,
        *,
        for_update: bool = False,
        with_consent: bool = False,
    ) -> Conversation:
        """The conversation if ``actor`` may see it; ``NotFound`` otherwise (never 403), and
        for a sealed one whoever asks.

        ``for_update`` reads the row with ``SELECT ... FOR UPDATE`` (PostgreSQL; SQLite holds
        the write lock already), so a write locks and re-reads it in one statement.
        A clinician without the physician role key in their session gets ``RoleKeyRequired``.
        The same statement reads the key wraps ``open_key`` will need and, with
        ``with_consent``, whether the member consents now (``consent_known``); neither is
        used unless the row check passes.
        """
        holder = self._holder_to_check(actor)
        statement = LOADS[for_update, with_consent]
        params = {"conversation_id": conversation_id, "holder": holder}
        if for_update:
            rows = self.session.execute(statement, params).all()
        else:
            # A plain read: before anything is written, it opens no transaction.
            rows = read_outside_transaction(self.session, statement, params)
        conversation: Conversation | None = rows[0][0] if rows else None
        if conversation is None:
            raise NotFound
        self._admit(actor, conversation, restricted=bool(rows[0].restricted))
        if holder is not None:
            found = EpochWraps(current=rows[0].current_epoch)
            for row in rows:
                found.add(row.epoch, row.recipient_key_id, row.wrap, row.ConversationKeyEpoch)
            self._wraps[conversation.id] = (holder, found)
        if with_consent:
            self._consents[conversation.id] = bool(rows[0].consents)
        if for_update:
            self._facts[conversation.id] = SealingFacts.from_columns(rows[0]._mapping)
        return conversation

    def check(
        self, actor: Principal, conversation_id: uuid.UUID, *, for_update: bool = False
    ) -> ConversationRecord:
        """``load`` for a flow that changes the conversation only through statements (a read
        of a page, a send): the same checks and answers, the row read as columns through the
        driver (``_CHECKS``) into a ``ConversationRecord``, which no session tracks. A
        member's page read runs it with no transaction open; ``for_update`` locks the row as
        ``load`` does and reads what ``load(with_consent=True)`` reads with it.

        Each epoch row read is checked against its tag here (``load``'s rows are checked as
        the ORM loads them), once the caller may see the conversation.
        """
        holder = self._holder_to_check(actor)
        rows = prefetched_row_check(self.session, conversation_id, holder, for_update=for_update)
        if rows is None:
            self.session.flush()
            rows = _CHECKS[for_update].all(
                self.session.connection(), {"conversation_id": conversation_id, "holder": holder}
            )
        if not rows:
            raise NotFound
        first = rows[0]
        conversation = ConversationRecord(*first[:_WRAP])
        self._admit(actor, conversation, restricted=bool(first[_RESTRICTED]))
        if for_update:
            self._consents[conversation.id] = bool(first[_CONSENTS])
            facts = dict(zip(FACT_NAMES, first[_FACTS:], strict=True))
            self._facts[conversation.id] = SealingFacts.from_columns(facts)
        if holder is not None:
            found = EpochWraps(current=first[_CURRENT])
            for row in rows:
                epoch_row = None
                if row[_EPOCH_ID] is not None:
                    values = dict(zip(EPOCH_COLUMNS, row[_EPOCH:_CURRENT], strict=True))
                    verify_columns(self.session, ConversationKeyEpoch, values, values["row_tag"])
                    epoch_row = ConversationKeyEpoch(**values)
                epoch, key_id, wrap = row[_WRAP:_EPOCH]
                found.add(epoch, key_id, wrap, epoch_row)
            self._wraps[conversation.id] = (holder, found)
        return conversation

    def _holder_to_check(self, actor: Principal) -> Holder | None:
        """Whose wraps the row check reads; a clinician without the physician role key in
        their session is refused first (``RoleKeyRequired``)."""
        if actor.role == Role.CLINICIAN:
            self.require_role_key(actor)
        return HOLDERS.get(actor.role)

    def _admit(self, actor: Principal, conversation: ConversationRow, *, restricted: bool) -> None:
        """The row check itself, whichever way the row was read: ``NotFound`` for a sealed
        conversation, or a member's not their own; ``Forbidden`` for any other role than a
        member or a clinician; a clinician reads a restricted member's question only while it
        is open."""
        if conversation.status not in LIVE_STATUSES:
            raise NotFound
        if actor.role == Role.MEMBER:
            if conversation.member_id != actor.id:
                raise NotFound
        elif actor.role != Role.CLINICIAN:
            raise Forbidden
        self._restricted[conversation.id] = restricted
        if actor.role == Role.CLINICIAN and conversation.status != ConversationStatus.OPEN:
            # A restricted member's conversation: a doctor reads only a question still
            # waiting for its answer (``services.restrictions``).
            self.require_unrestricted(conversation)

    def require_unrestricted(self, conversation: ConversationRow) -> None:
        """Raise ``ProcessingRestricted`` while the conversation's member restricts processing
        (what ``load`` read with the row; the restriction's row is loaded, its tag checked,
        only when it exists)."""
        RestrictionService(self.session, self.runtime).require_unrestricted(
            conversation.member_id, known=self._restricted.get(conversation.id)
        )

    def consent_known(self, conversation: ConversationRow) -> bool | None:
        """Whether the member consented when ``load(with_consent=True)`` read the row."""
        return self._consents.get(conversation.id)

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

    def open_key(self, actor: Principal, conversation: ConversationRow) -> ConversationDeks:
        """The DEKs, opened with a key in the actor's session (after the row check).

        Raises ``HistoryPending`` when a member's session holds no key with a wrap here yet:
        after a password reset the history is re-sealed to the new key by a clinician's
        session (``medchat.keys.member_rewrap``), never by a key the server holds.
        """
        holder = self.holder_for(actor)
        prefetched = self._wraps.get(conversation.id)
        wraps = prefetched[1] if prefetched is not None and prefetched[0] == holder else None
        try:
            return self.dek(conversation, actor.keyring, holder, wraps)
        except NotFound:
            if holder is Holder.MEMBER:
                raise HistoryPending from None
            raise

    def dek(
        self,
        conversation: ConversationRow,
        keyring: Keyring,
        holder: Holder,
        wraps: EpochWraps | None = None,
    ) -> ConversationDeks:
        return self.runtime.conversation_keys(self.session).open_key(
            conversation, keyring, holder, wraps=wraps
        )

    def ready_to_seal(
        self, actor: Principal, conversation: ConversationRow, deks: ConversationDeks
    ) -> None:
        """Make ``deks`` seal new content under a fresh key epoch, starting one if needed.

        Raises ``RotationOverdue`` past a role key's rotation deadline. The facts come from
        the locked read (``load(for_update=True)``), or are read now. A new epoch begins
        under the conversation's row lock (a send holds it already; anyone else takes it
        here, so two writers never insert the same epoch), and only after what is committed
        is read again: on PostgreSQL the locked read of a row another send just changed
        still joins the epochs of the snapshot before it, and that send may have started the
        new epoch already.
        """
        if deks.begun == deks.current:
            return  # begun in this unit of work, with its own checks
        keys = self.runtime.conversation_keys(self.session)
        now = self.runtime.clock.now()
        facts = self._facts.get(conversation.id)
        if facts is None:
            facts = SealingFacts.read(self.session, conversation.member_id)
        deadline = self.runtime.settings.rotation_deadline
        require_sealable(facts.due, now, deadline, self.session.info)
        if facts.fresh(deks.rows.get(deks.current)):
            return
        self.session.execute(_LOCK, {"conversation_id": conversation.id})
        if current_epoch(self.session, conversation.id) != deks.current:
            deks.replace(self.dek(conversation, actor.keyring, self.holder_for(actor)))
            facts = SealingFacts.read(self.session, conversation.member_id)
            if facts.fresh(deks.rows.get(deks.current)):
                return
        keys.start_epoch(conversation, deks, now)
