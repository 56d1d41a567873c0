"""Key epochs: which DEK seals new content, and when a new one must start (issue 18, item 2).

Before epochs, a conversation kept one DEK for life. Rotation re-sealed its wraps, a reset
re-sealed the member's, but every later message went under the same key: a revoked holder who
kept the old role key (or rebuilt it from an earlier database copy and their password), or
whoever had a member's old password and an earlier copy, unwrapped that DEK once and read
everything written afterwards from any later copy.

Now each conversation has numbered epochs, each its own DEK, commitment and wraps
(``medchat.models.epochs``). Content is sealed under the current (highest) epoch, provided it
is **fresh**: begun after every event that removed a reader of the conversation, decided from
facts read with the conversation row in the same statement:

- the physician and archive role key versions new epochs are sealed to (the active key, or
  the successor a loss made: ``medchat.keys.successors``) are the ones the epoch was sealed
  to (a rotation's activation, or a successor, starts a new epoch everywhere);
- the member's current personal key is the one the epoch was sealed to (a password reset);
- no holder of a role key lost it since (``KeyReaderRemoval``: revoked, disabled, reset).

Otherwise the next seal starts a new epoch first (``ConversationKeys.start_epoch``): a fresh
DEK wrapped to the active, pinned role keys (or their successors) and the member's current,
verified key only. So
nothing is done at the event itself beyond what it did before (and one counted row): the
cost falls on the next write of each conversation, one DEK and three wraps, and a
conversation nobody writes to again never pays it. Old epochs stay wrapped (rotations re-seal
them, re-wraps re-seal them to a member's new key), so history reads on; each ciphertext's
envelope names the key id that sealed it, and ``medchat.keys.sealing.ContentKey`` opens it with
that epoch's DEK.

A loss also makes a successor role key at once (``medchat.keys.successors``), and the new
epoch is wrapped to it, not to the role key the leaver may have kept: that shuts out a reader
who kept the role key as well as one who kept conversation keys. The rotation that the loss
makes due (and that ``medchat.keys.rotation_deadline`` enforces) re-seals the old wraps and
replaces the successors with a pinned key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session, aliased

from access_control import crypto
from medchat.errors import KeyIntegrityFailure
from medchat.models import (
    ConversationKeyEpoch,
    ConversationKeyWrap,
    ConversationRow,
    KeyReaderRemoval,
    KeyRole,
    PersonalKey,
    RoleKey,
    RoleKeyStatus,
)


class ConversationDeks(crypto.SecretHandle):
    """A conversation's opened DEKs, one per epoch, and the epoch new content is sealed under.

    ``rows`` are the epochs' tag-verified rows (none for a migrated epoch 1 still standing on
    its conversation row). ``begin`` adds the epoch a seal just started; ``begun`` names it
    (fresh by construction for the rest of the unit of work).
    """

    __slots__ = ("_deks", "begun", "conversation_id", "rows")

    def __init__(
        self,
        conversation_id: uuid.UUID,
        deks: Mapping[int, bytes],
        rows: Mapping[int, ConversationKeyEpoch] | None = None,
    ) -> None:
        if not deks:
            raise ValueError("a conversation has at least one key epoch")
        self.conversation_id = conversation_id
        self._deks = dict(deks)
        self.rows = dict(rows or {})
        self.begun: int | None = None

    def __repr__(self) -> str:
        return f"ConversationDeks(conversation={self.conversation_id}, epochs={self.epochs()})"

    @property
    def current(self) -> int:
        return max(self._deks)

    @property
    def sealing(self) -> bytes:
        """The DEK new content is sealed under (the current epoch's)."""
        return self._deks[self.current]

    def of(self, epoch: int) -> bytes:
        return self._deks[epoch]

    def epochs(self) -> list[int]:
        return sorted(self._deks)

    def all(self) -> list[bytes]:
        return [self._deks[epoch] for epoch in self.epochs()]

    def begin(self, epoch: int, dek: bytes, row: ConversationKeyEpoch) -> None:
        if epoch <= self.current:
            raise ValueError("a new epoch comes after every epoch there is")
        self._deks[epoch] = dek
        self.rows[epoch] = row
        self.begun = epoch

    def replace(self, other: ConversationDeks) -> None:
        """Take the epochs ``other`` opened (read again after a concurrent writer)."""
        self._deks = dict(other._deks)
        self.rows = dict(other.rows)


@dataclass
class EpochWraps:
    """One holder's wraps of one conversation, by epoch, with the epochs' rows."""

    #: The highest epoch the conversation has (1 when it has no epoch row yet).
    current: int = 1
    wraps: dict[int, dict[bytes, bytes]] = field(default_factory=dict)
    rows: dict[int, ConversationKeyEpoch] = field(default_factory=dict)

    def add(self, epoch: int | None, key_id: bytes | None, wrap: bytes | None, row: Any) -> None:
        """One row of an outer join: (epoch, recipient key id, wrap, epoch row or None)."""
        if epoch is None or key_id is None or wrap is None:
            return
        self.wraps.setdefault(epoch, {})[key_id] = wrap
        if row is not None:
            self.rows[epoch] = row


def current_epoch_column(conversation_id: Any) -> ColumnElement[int]:
    """The conversation's highest epoch as a column (1 before any epoch row exists).

    Its own alias of the epochs table: the enclosing statement joins that table too, and
    would otherwise correlate it away."""
    epochs = aliased(ConversationKeyEpoch)
    return func.coalesce(
        select(func.max(epochs.epoch))
        .where(epochs.conversation_id == conversation_id)
        .scalar_subquery(),
        1,
    ).label("current_epoch")


#: One holder's wraps of all epochs, each with its epoch's row, and the highest epoch.
HOLDER_WRAPS = (
    select(
        ConversationKeyWrap.epoch,
        ConversationKeyWrap.recipient_key_id,
        ConversationKeyWrap.wrap,
        ConversationKeyEpoch,
        current_epoch_column(bindparam("conversation_id")),
    )
    .outerjoin(
        ConversationKeyEpoch,
        and_(
            ConversationKeyEpoch.conversation_id == ConversationKeyWrap.conversation_id,
            ConversationKeyEpoch.epoch == ConversationKeyWrap.epoch,
        ),
    )
    .where(
        ConversationKeyWrap.conversation_id == bindparam("conversation_id"),
        ConversationKeyWrap.holder == bindparam("holder"),
    )
)


def holder_wraps(session: Session, conversation_id: uuid.UUID, holder: str) -> EpochWraps:
    found = EpochWraps()
    for row in session.execute(
        HOLDER_WRAPS, {"conversation_id": conversation_id, "holder": holder}
    ):
        found.current = row.current_epoch
        found.add(row.epoch, row.recipient_key_id, row.wrap, row.ConversationKeyEpoch)
    return found


def current_epoch(session: Session, conversation_id: uuid.UUID) -> int:
    """The highest epoch as committed now (a new statement: sees a concurrent writer's)."""
    number = session.scalar(
        select(func.max(ConversationKeyEpoch.epoch)).where(
            ConversationKeyEpoch.conversation_id == conversation_id
        )
    )
    return number or 1


def commitment_of(
    conversation: ConversationRow, epoch: int, rows: Mapping[int, ConversationKeyEpoch]
) -> bytes:
    """The commitment an epoch's DEK must match (``epoch_commitment`` for a loaded row)."""
    return epoch_commitment(conversation.id, conversation.key_commitment, epoch, rows.get(epoch))


def epoch_commitment(
    conversation_id: uuid.UUID,
    first: bytes,
    epoch: int,
    row: ConversationKeyEpoch | None,
) -> bytes:
    """The commitment an epoch's DEK must match, from tag-verified rows only.

    Epoch 1's is the conversation row's own (``first``: its key-set tag covers it), and its
    epoch row, once migrated, must agree. A later epoch without its row cannot be checked:
    refused.
    """
    if epoch == 1:
        if row is not None and not crypto.constant_time_equal(row.key_commitment, first):
            raise KeyIntegrityFailure("This conversation's first key epoch was altered.")
        return first
    if row is None or row.conversation_id != conversation_id or row.epoch != epoch:
        raise KeyIntegrityFailure("A key epoch of this conversation is missing its record.")
    return row.key_commitment


# -- freshness -------------------------------------------------------------------------------


def _active(role: str, column: Any, aggregate: Any, *statuses: str) -> ColumnElement[Any]:
    """The aggregate over the role's keys in these statuses (the active key by default).

    The statuses are compared one by one (``status = :a OR status = :b``), not with
    ``IN (...)``: SQLAlchemy renders an ``IN`` of values anew at every execution (an
    "expanding" parameter), and these columns ride on the send's locked read, the hottest
    statement the service runs (tests/api/test_hot_path_statements.py).
    """
    wanted = statuses or (RoleKeyStatus.ACTIVE,)
    return (
        select(aggregate(column))
        .where(RoleKey.role == role, or_(*(RoleKey.status == status for status in wanted)))
        .scalar_subquery()
    )


#: The version a new epoch is wrapped to: the newest of the active key and its successors
#: (``medchat.keys.successors.sealing_key``), so a successor made by a loss stales every epoch.
_SEALED_TO = (RoleKeyStatus.ACTIVE, RoleKeyStatus.SUCCESSOR)


def facts_columns(member_id: Any) -> list[ColumnElement[Any]]:
    """What ``SealingFacts`` holds, as columns a conversation's locked read adds (one
    statement for the row, its wraps, consent and these: the send's hot path)."""
    return [
        _active(KeyRole.PHYSICIAN, RoleKey.version, func.max, *_SEALED_TO).label("fact_physician"),
        _active(KeyRole.ARCHIVE, RoleKey.version, func.max, *_SEALED_TO).label("fact_archive"),
        _active(KeyRole.PHYSICIAN, RoleKey.rotation_due_at, func.min).label("fact_physician_due"),
        _active(KeyRole.ARCHIVE, RoleKey.rotation_due_at, func.min).label("fact_archive_due"),
        select(PersonalKey.key_id)
        .where(PersonalKey.account_id == member_id, PersonalKey.retired_at.is_(None))
        .order_by(PersonalKey.created_at.desc())
        .limit(1)
        .scalar_subquery()
        .label("fact_member_key"),
        select(func.count()).select_from(KeyReaderRemoval).scalar_subquery().label("fact_removals"),
    ]


@dataclass(frozen=True)
class SealingFacts:
    """The state an epoch must have begun in to be sealed to now (module docstring)."""

    physician_version: int | None
    archive_version: int | None
    member_key_id: bytes | None
    removals: int
    #: Since when each role's active key is due for rotation (``rotation_deadline``).
    due: dict[str, datetime]

    @classmethod
    def from_columns(cls, row: Mapping[Any, Any]) -> SealingFacts:
        """From ``facts_columns`` by their labels (a result row's ``_mapping``, or the
        columns a driver statement read)."""
        due = {
            role: at
            for role, at in (
                (str(KeyRole.PHYSICIAN), row["fact_physician_due"]),
                (str(KeyRole.ARCHIVE), row["fact_archive_due"]),
            )
            if at is not None
        }
        member_key = row["fact_member_key"]
        return cls(
            physician_version=row["fact_physician"],
            archive_version=row["fact_archive"],
            member_key_id=bytes(member_key) if member_key is not None else None,
            removals=row["fact_removals"] or 0,
            due=due,
        )

    @classmethod
    def read(cls, session: Session, member_id: uuid.UUID) -> SealingFacts:
        """The facts as committed now (a statement of their own)."""
        return cls.from_columns(session.execute(select(*facts_columns(member_id))).one()._mapping)

    def fresh(self, row: ConversationKeyEpoch | None) -> bool:
        """Whether an epoch (its row; None for a migrated epoch 1) may still be sealed to."""
        if row is None or row.member_key_id is None:
            return False
        return (
            row.physician_version == self.physician_version
            and row.archive_version == self.archive_version
            and crypto.constant_time_equal(row.member_key_id, self.member_key_id or b"")
            and row.removals >= self.removals
        )


def removals_recorded(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(KeyReaderRemoval)) or 0


def new_epoch_row(
    conversation: ConversationRow,
    epoch: int,
    commitment: bytes,
    *,
    member_key_id: bytes,
    versions: Iterable[int],
    removals: int,
    now: datetime,
) -> ConversationKeyEpoch:
    physician_version, archive_version = versions
    return ConversationKeyEpoch(
        id=uuid.uuid4(),
        conversation_id=conversation.id,
        epoch=epoch,
        key_commitment=commitment,
        member_key_id=member_key_id,
        physician_version=physician_version,
        archive_version=archive_version,
        removals=removals,
        created_at=now,
    )
