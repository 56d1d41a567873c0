"""What retention has to do as of a given time: the cut-offs and the due rows, batch by batch.

SECURITY-MODEL "Deletion, sealed archive, retention". Two periods:

- a **live** conversation (not sealed) is due once its question was received more than
  ``retention_days`` ago: ``created_at < as_of - retention_days`` (the question is the first
  message, so ``created_at`` is when it was received). Exactly on the boundary it stays.
- a **sealed** archive record is due once it was sealed more than ``archive_retention_days``
  ago: ``sealed_at < as_of - archive_retention_days``. The period counts from the sealing,
  not from the question: a member's deletion request (or retention's seal-first mode) starts
  the archive's legal keeping period, so a conversation sealed late is still kept in full.
  The decision uses the record's own ``sealed_at``, which its hash and signature cover.

Rows are walked in the order of the partial indexes of migration 0006 (question time or
sealing time, then id) with a keyset cursor, so every batch costs the same however many rows
earlier batches removed or stepped over. A locking walk takes the conversation rows
``FOR UPDATE SKIP LOCKED`` (PostgreSQL): rows another run holds are left to it, so hosts that
run retention at once share the work and never handle one row twice. On SQLite every unit of
work holds the database write lock and the runs take turns.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnClause, Select, and_, func, literal_column, select, tuple_
from sqlalchemy.orm import Session

from medchat.archive.records import RecordKind
from medchat.clock import iso_z
from medchat.config import Settings
from medchat.models import ArchiveRecord, Conversation

#: The predicates of the partial indexes, spelled as in the index (a bound parameter would
#: keep PostgreSQL from proving that the index covers the query).
_SEALED: ColumnClause[str] = literal_column("'sealed'")

Cursor = tuple[datetime, uuid.UUID]


class DueKind(enum.StrEnum):
    """What retention does to a due item (the audit action is ``retention.<kind>``)."""

    DESTROY = "destroy"
    SEAL = "seal"
    ARCHIVE_DESTROY = "archive_destroy"


@dataclass(frozen=True)
class Cutoffs:
    """Rows older than these times are due."""

    as_of: datetime
    retention_days: int
    archive_retention_days: int

    @property
    def live(self) -> datetime:
        """Questions received before this are due."""
        return self.as_of - timedelta(days=self.retention_days)

    @property
    def archive(self) -> datetime:
        """Records sealed before this are due."""
        return self.as_of - timedelta(days=self.archive_retention_days)

    @classmethod
    def of(cls, settings: Settings, as_of: datetime) -> Cutoffs:
        """Raises ``ValueError`` for a time without a zone (ambiguous by hours)."""
        if as_of.tzinfo is None or as_of.utcoffset() is None:
            raise ValueError("as_of needs a time zone")
        return cls(as_of, settings.retention_days, settings.archive_retention_days)


@dataclass(frozen=True)
class DueItem:
    """One due item as a dry run lists it: ids, what would happen, since when it is due."""

    kind: DueKind
    conversation_id: uuid.UUID
    record_id: uuid.UUID | None
    due_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "conversation_id": str(self.conversation_id),
            "record_id": None if self.record_id is None else str(self.record_id),
            "due_at": iso_z(self.due_at),
        }


#: Any select: ``_lock`` gives back the statement's own type.
_Statement = TypeVar("_Statement", bound="Select[*tuple[Any, ...]]")


def _lock(statement: _Statement, lock: bool, session: Session) -> _Statement:
    if lock and session.get_bind().dialect.name == "postgresql":
        return statement.with_for_update(skip_locked=True, of=Conversation)
    return statement


def live_batch(
    session: Session, cutoff: datetime, after: Cursor | None, limit: int, *, lock: bool
) -> list[Conversation]:
    """The next live conversations whose question came before ``cutoff``, oldest first.

    With ``lock`` the rows are locked (skipping those another transaction holds) and read
    afresh, so the caller sees their state as of the lock.
    """
    statement = (
        select(Conversation)
        .where(Conversation.status != _SEALED, Conversation.created_at < cutoff)
        .order_by(Conversation.created_at, Conversation.id)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    if after is not None:
        statement = statement.where(tuple_(Conversation.created_at, Conversation.id) > after)
    return list(session.scalars(_lock(statement, lock, session)))


def sealed_position(conversation: Conversation) -> Cursor:
    """Where a walk of sealed conversations (``archived_batch``) resumes after this one."""
    if conversation.sealed_at is None:  # archived_batch finds only sealed conversations
        raise ValueError(f"conversation {conversation.id} is not sealed")
    return conversation.sealed_at, conversation.id


def archived_batch(
    session: Session, cutoff: datetime, after: Cursor | None, limit: int, *, lock: bool
) -> list[tuple[Conversation, ArchiveRecord]]:
    """The next sealed conversations (content still stored) sealed before ``cutoff``, with
    their sealed ledger record; oldest sealing first. Locks as ``live_batch`` does (the
    conversation rows only: ledger rows are append-only, the service may not lock them).

    A conversation whose ``sealed_at`` was moved by someone who can write the database is
    still judged by its record: the caller checks the record's ``sealed_at``.
    """
    statement = (
        select(Conversation, ArchiveRecord)
        .join(
            ArchiveRecord,
            and_(
                ArchiveRecord.conversation_id == Conversation.id,
                ArchiveRecord.kind == RecordKind.SEALED,
            ),
        )
        .where(Conversation.status == _SEALED, Conversation.sealed_at < cutoff)
        .order_by(Conversation.sealed_at, Conversation.id)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    if after is not None:
        statement = statement.where(tuple_(Conversation.sealed_at, Conversation.id) > after)
    return [(row[0], row[1]) for row in session.execute(_lock(statement, lock, session))]


def destroyed_already(session: Session, record_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """The sealed records among ``record_ids`` that a "destroyed" record refers to."""
    if not record_ids:
        return set()
    return set(
        session.scalars(
            select(ArchiveRecord.refers_to).where(
                ArchiveRecord.kind == RecordKind.DESTROYED,
                ArchiveRecord.refers_to.in_(record_ids),
            )
        )
    )


def count_due(session: Session, cutoffs: Cutoffs) -> tuple[int, int]:
    """(live conversations due, archived conversations due): the progress bar's total."""
    live = session.scalar(
        select(func.count()).where(
            Conversation.status != _SEALED, Conversation.created_at < cutoffs.live
        )
    )
    archived = session.scalar(
        select(func.count()).where(
            Conversation.status == _SEALED, Conversation.sealed_at < cutoffs.archive
        )
    )
    return int(live or 0), int(archived or 0)


def list_due(
    session: Session, cutoffs: Cutoffs, *, seal_expired: bool, batch: int
) -> Iterator[DueItem]:
    """Everything a run as of ``cutoffs.as_of`` would handle, without locking anything.

    Archive records first (a run destroys archived content before it seals expired live
    conversations, so one run never seals and destroys the same conversation).
    """
    archive_period = timedelta(days=cutoffs.archive_retention_days)
    after: Cursor | None = None
    while pairs := archived_batch(session, cutoffs.archive, after, batch, lock=False):
        after = sealed_position(pairs[-1][0])
        gone = destroyed_already(session, [record.id for _, record in pairs])
        for conversation, record in pairs:
            if record.sealed_at < cutoffs.archive and record.id not in gone:
                yield DueItem(
                    DueKind.ARCHIVE_DESTROY,
                    conversation.id,
                    record.id,
                    record.sealed_at + archive_period,
                )
    live_period = timedelta(days=cutoffs.retention_days)
    kind = DueKind.SEAL if seal_expired else DueKind.DESTROY
    after = None
    while conversations := live_batch(session, cutoffs.live, after, batch, lock=False):
        after = (conversations[-1].created_at, conversations[-1].id)
        for conversation in conversations:
            yield DueItem(kind, conversation.id, None, conversation.created_at + live_period)
