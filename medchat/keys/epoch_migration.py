"""Bringing conversations from before key epochs into them: online, resumable, keyless.

Migration 0016 adds the schema only (``medchat.models.epochs``): a conversation created before
it has its wraps and content in epoch 1, but no epoch row; its conversation row (commitment
and key-set tag) stands for epoch 1 meanwhile, so reads and sends work from the moment the new
release runs. ``medchat keys migrate-epochs`` then writes the missing epoch-1 rows, so that
every epoch of every conversation has its tagged row and nothing depends on the stand-in:

- a batch per transaction: the next ``batch_size`` conversations by id, after the run's cursor,
  that have no epoch-1 row, locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: a send to one of
  them, or a second run, is simply passed over and found by a later run);
- each conversation's key-set tag is verified first (integrity key, no DEK): the row copies
  its commitment, and a conversation that fails is left as it is, logged and audited
  (``key_epochs.migrate_refused``), to be treated as a database-writer incident;
- the row records nothing of what the DEK was sealed to (``member_key_id`` NULL, versions and
  removals 0): that was never stored, so the epoch counts as begun before every event, and the
  conversation's next seal starts epoch 2 with a fresh DEK, exactly as without the row.

Needs only the integrity key (``MEDCHAT_KEY_DIR``), never a password: nothing here opens a
DEK. Stopped anywhere, a run resumes by itself: what is left is every conversation without an
epoch-1 row. Each batch is audited (``key_epochs.migrate_batch``, counts only).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import exists, func, insert, select
from sqlalchemy.orm import Session

from medchat import audit
from medchat.errors import KeyIntegrityFailure
from medchat.models import Conversation, ConversationKeyEpoch
from medchat.storage.batch_jobs import BatchJob
from medchat.storage.row_integrity import tag_values

log = logging.getLogger("medchat.epoch_migration")

#: Called with (conversations handled so far, conversations to handle in all) after a batch.
Progress = Callable[[int, int], None]

_HAS_FIRST = exists().where(
    ConversationKeyEpoch.conversation_id == Conversation.id, ConversationKeyEpoch.epoch == 1
)


@dataclass
class EpochMigrationResult:
    """Rows written, conversations refused (ids), conversations left without an epoch-1 row
    (the refused ones included); ``finished`` is False when ``max_batches`` stopped the run."""

    migrated: int = 0
    refused: list[uuid.UUID] = field(default_factory=list)
    remaining: int = 0
    finished: bool = True


def remaining_conversations(session: Session) -> int:
    """Conversations whose epoch 1 has no row yet."""
    return session.scalar(select(func.count()).select_from(Conversation).where(~_HAS_FIRST)) or 0


class EpochMigration(BatchJob):
    """Writes the epoch-1 row of every conversation from before key epochs."""

    def run(
        self, max_batches: int | None = None, progress: Progress | None = None
    ) -> EpochMigrationResult:
        result = EpochMigrationResult()
        with self.runtime.database.transaction() as session:
            total = remaining_conversations(session)
        cursor: uuid.UUID | None = None
        batches = 0
        while max_batches is None or batches < max_batches:
            with self.runtime.database.transaction() as session:
                audit.set_context(session, self.audit_context)
                cursor = self._batch(session, cursor, result)
            if cursor is None:
                break
            batches += 1
            if progress is not None:
                done = result.migrated + len(result.refused)
                progress(done, max(total, done))
        else:
            result.finished = False
        with self.runtime.database.transaction() as session:
            result.remaining = remaining_conversations(session)
        if result.finished and result.remaining > len(result.refused):
            # Passed over while locked by a send: the next run finds them.
            result.finished = False
        return result

    def _batch(
        self, session: Session, cursor: uuid.UUID | None, result: EpochMigrationResult
    ) -> uuid.UUID | None:
        """Migrate the next batch after ``cursor``; the last id handled, or None at the end."""
        statement = select(Conversation).where(~_HAS_FIRST).order_by(Conversation.id)
        if cursor is not None:
            statement = statement.where(Conversation.id > cursor)
        locked = statement.limit(self.batch_size).with_for_update(
            skip_locked=self.runtime.database.is_postgresql
        )
        conversations = list(session.scalars(locked))
        if not conversations:
            return None
        keys = self.runtime.conversation_keys(session)
        rows, refused = [], []
        for conversation in conversations:
            try:
                keys.verify_conversation(conversation)
            except KeyIntegrityFailure:
                refused.append(conversation.id)
                continue
            row = {
                "id": uuid.uuid4(),
                "conversation_id": conversation.id,
                "epoch": 1,
                "key_commitment": conversation.key_commitment,
                "member_key_id": None,
                "physician_version": 0,
                "archive_version": 0,
                "removals": 0,
                "created_at": conversation.created_at,
            }
            row["row_tag"] = tag_values(session, ConversationKeyEpoch, row)
            rows.append(row)
        if rows:
            session.execute(insert(ConversationKeyEpoch), rows)
        for conversation_id in refused:
            log.error("conversation %s left without key epochs: its key set fails", conversation_id)
            audit.record(
                session,
                "key_epochs.migrate_refused",
                outcome="failed",
                target_type="conversation",
                target_id=conversation_id,
                details={"reason": "key_set_altered"},
            )
        audit.record(
            session,
            "key_epochs.migrate_batch",
            details={"migrated": len(rows), "refused": len(refused)},
        )
        result.migrated += len(rows)
        result.refused += refused
        return conversations[-1].id
