"""Retention by crypto-shredding: expired conversations and archive records are destroyed.

SECURITY-MODEL "Deletion, sealed archive, retention". As of a time (the injected clock, or an
explicit ``as_of``; what is due is ``medchat.services.retention_due``'s):

1. **Archive records** whose archive retention has passed and whose content is still stored:
   their ciphertexts and archive wrap are deleted (``medchat.services.shredding``) and a signed
   "destroyed" record referring to the sealed one is appended to the ledger
   (``ledger.append_destroyed``), in the same transaction, so ``ledger.verify`` accepts the
   missing content. The ledger itself only grows. Before destroying, the sealed record's hash,
   its signature under the pinned key and the stored content's hash are checked: content that
   someone altered is left in place (and the failure audited), because destroying it would
   also destroy the evidence ``medchat archive verify`` names.
2. **Live conversations** whose question is older than ``retention_days``: destroyed the same
   way (every wrap of every holder, every ciphertext, read markers, idempotency records, queued
   re-wraps, the row), or, with ``retention_seal_expired``, sealed into the archive first with
   reason ``retention`` (``DeletionService.seal``: the member and physician wraps go, the
   archive wrap's gate is lifted, the archive keeps the rest until archive retention).
   Archive records go first, so one run never seals and destroys the same conversation.
3. **Audit network addresses** recorded more than ``audit_address_days`` (180) before: erased
   (``medchat.audit.address_erasure``); the chains still verify. Counted in the run's entry.

Each batch of ``retention_batch`` rows is one transaction: rows locked ``FOR UPDATE SKIP
LOCKED`` and re-checked as of the lock, the work, and one audit entry per item with the member
as subject (their access log shows it): ``retention.destroy``, ``retention.seal`` or
``retention.archive_destroy``, ids and counts only. A failed batch leaves nothing of itself.
Every run ends with one ``retention.run`` entry (``retention.dry_run`` for a dry run) holding
the counts; a run that fails writes it with outcome ``failed``. Several hosts may run at once:
each item is handled by exactly one of them, and a second run finds nothing left to do.

A dry run lists what would go (kind, ids, due date) and changes nothing but the audit trail.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from access_control import crypto
from medchat import audit
from medchat.archive import ledger
from medchat.archive.content_hashes import SealedContent, content_hashes
from medchat.audit import address_erasure
from medchat.clock import iso_z
from medchat.models import ArchiveRecord, Conversation, ConversationStatus
from medchat.services.context import ServiceContext
from medchat.services.deletion import DeletionService
from medchat.services.question_times import drop_moved
from medchat.services.retention_due import (
    Cursor,
    Cutoffs,
    DueItem,
    DueKind,
    archived_batch,
    count_due,
    destroyed_already,
    list_due,
    live_batch,
    sealed_position,
)
from medchat.services.retention_result import EarlyDestruction, RetentionResult
from medchat.services.shredding import destroy_unless_busy, lock_free

__all__ = [
    "RETENTION",
    "DueItem",
    "DueKind",
    "EarlyDestruction",
    "RetentionResult",
    "RetentionService",
]

RETENTION = "retention"
#: Called with (items handled so far, items due when the run began) after each batch.
Progress = Callable[[int, int], None]
log = logging.getLogger("medchat.retention")


class RetentionService:
    """Runs retention over the whole database, one transaction per batch (module docstring).

    ``runtime.database`` is the session factory: each batch opens its own session, so two
    services (threads, processes, hosts) run side by side without sharing one.
    """

    def __init__(
        self,
        runtime: ServiceContext,
        *,
        batch_size: int | None = None,
        seal_expired: bool | None = None,
        progress: Progress | None = None,
        audit_context: audit.AuditContext | None = None,
    ) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.batch_size = settings.retention_batch if batch_size is None else batch_size
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.seal_expired = (
            settings.retention_seal_expired if seal_expired is None else seal_expired
        )
        self.progress = progress
        self.audit_context = audit_context or audit.AuditContext(actor_role="system")
        self._total = 0

    @contextmanager
    def _step(self) -> Iterator[Session]:
        with self.runtime.database.transaction() as session:
            audit.set_context(session, self.audit_context)
            yield session

    def run(self, as_of: datetime | None = None, *, dry_run: bool = False) -> RetentionResult:
        """Destroy (or seal) everything due as of ``as_of`` (default: the clock's now).

        Raises ``ValueError`` for an ``as_of`` without a time zone, and ``EarlyDestruction``
        for a real run as of a time later than now: what the product keeps for two years is
        never destroyed before its time (a dry run may look ahead). A failing batch raises
        after its transaction is rolled back; the batches before it stay done.
        """
        now = self.runtime.clock.now()
        cutoffs = Cutoffs.of(self.runtime.settings, now if as_of is None else as_of)
        if cutoffs.as_of > now and not dry_run:
            raise EarlyDestruction(cutoffs.as_of, now)
        run_id = uuid.uuid4()
        result = RetentionResult(as_of=cutoffs.as_of, dry_run=dry_run)
        if dry_run:
            return self._dry_run(cutoffs, result, run_id)
        with self._step() as session:
            self._total = sum(count_due(session, cutoffs))
        try:
            self._archive_phase(cutoffs, result, run_id)
            self._live_phase(cutoffs, result, run_id)
            self._address_phase(cutoffs, result)
        except BaseException:
            try:
                self._summary("retention.run", cutoffs, result, run_id, outcome="failed")
            except Exception:  # the original failure is the one to report
                log.exception("could not audit the failed retention run %s", run_id)
            raise
        self._summary("retention.run", cutoffs, result, run_id)
        return result

    # -- archive records -----------------------------------------------------------------

    def _archive_phase(self, cutoffs: Cutoffs, result: RetentionResult, run_id: uuid.UUID) -> None:
        after: Cursor | None = None
        while True:
            step = RetentionResult(as_of=cutoffs.as_of, dry_run=False)
            with self._step() as session:
                pairs = archived_batch(session, cutoffs.archive, after, self.batch_size, lock=True)
                if not pairs:
                    return
                after = sealed_position(pairs[-1][0])
                self._archive_batch(session, cutoffs, pairs, step, run_id)
            self._advance(result, step)

    def _archive_batch(
        self,
        session: Session,
        cutoffs: Cutoffs,
        pairs: list[tuple[Conversation, ArchiveRecord]],
        step: RetentionResult,
        run_id: uuid.UUID,
    ) -> None:
        gone = destroyed_already(session, [record.id for _, record in pairs])
        due = [
            (conversation, record)
            for conversation, record in pairs
            if conversation.status == ConversationStatus.SEALED
            and record.sealed_at < cutoffs.archive
            and record.id not in gone
        ]
        stored = content_hashes(session, [conversation.id for conversation, _ in due])
        intact = []
        for conversation, record in due:
            if self._intact(record, stored.get(conversation.id)):
                intact.append((conversation.id, conversation.member_id, record))
                continue
            step.archive_records_refused += 1
            log.error("retention left archive record %s: it fails its integrity check", record.id)
            audit.record(
                session,
                "retention.archive_destroy",
                outcome="failed",
                target_type="conversation",
                target_id=conversation.id,
                subject_id=conversation.member_id,
                details={
                    "run_id": str(run_id),
                    "record_id": str(record.id),
                    "refused": "integrity",
                },
            )
        shredded, busy = destroy_unless_busy(session, [item[0] for item in intact])
        step.skipped_busy = len(busy)
        intact = [item for item in intact if item[0] not in busy]
        now = self.runtime.clock.now()
        signer = self.runtime.archive_signer
        for conversation_id, member_id, record in intact:
            destroyed = ledger.append_destroyed(session, signer, record, reason=RETENTION, at=now)
            counts = shredded[conversation_id]
            audit.record(
                session,
                "retention.archive_destroy",
                target_type="conversation",
                target_id=conversation_id,
                subject_id=member_id,
                details={
                    "run_id": str(run_id),
                    "record_id": str(record.id),
                    "destroyed_record_id": str(destroyed.id),
                    "seq": destroyed.seq,
                    "messages": counts.messages,
                    "attachments": counts.attachments,
                    "wraps": counts.wraps,
                },
            )
        step.archive_records_destroyed = len(intact)

    def _intact(self, record: ArchiveRecord, stored: SealedContent | None) -> bool:
        """The record is the signing key's and the content is what it hashed."""
        if stored is None or ledger.RecordFields.of(record).record_hash() != record.record_hash:
            return False
        try:
            ledger.verify_record_signature(
                self.runtime.archive_signer.public_key,
                record.signing_key_id,
                record.record_hash,
                record.signature,
            )
        except crypto.IntegrityCheckFailed:
            return False
        return crypto.constant_time_equal(stored.content_hash, record.content_hash)

    # -- live conversations --------------------------------------------------------------

    def _live_phase(self, cutoffs: Cutoffs, result: RetentionResult, run_id: uuid.UUID) -> None:
        after: Cursor | None = None
        while True:
            step = RetentionResult(as_of=cutoffs.as_of, dry_run=False)
            with self._step() as session:
                conversations = live_batch(session, cutoffs.live, after, self.batch_size, lock=True)
                if not conversations:
                    return
                after = (conversations[-1].created_at, conversations[-1].id)
                # Re-checked as of the lock: a row sealed meanwhile is not live any more.
                due = [
                    c
                    for c in conversations
                    if c.status != ConversationStatus.SEALED and c.created_at < cutoffs.live
                ]
                action = "retention.seal" if self.seal_expired else "retention.destroy"
                due, step.live_refused = drop_moved(
                    session, self.runtime.keys.audit_mac, due, cutoffs.live, action, run_id
                )
                if self.seal_expired:
                    # Sealing deletes wraps one conversation at a time: take them up front.
                    free = lock_free(session, [c.id for c in due])
                    step.skipped_busy = len(due) - len(free)
                    self._seal(session, [c for c in due if c.id in free], step, run_id)
                else:
                    self._destroy(session, due, step, run_id)
            self._advance(result, step)

    def _seal(
        self,
        session: Session,
        conversations: list[Conversation],
        step: RetentionResult,
        run_id: uuid.UUID,
    ) -> None:
        deletion = DeletionService(session, self.runtime)
        for conversation in conversations:
            record = deletion.seal(conversation, reason=RETENTION)
            audit.record(
                session,
                "retention.seal",
                target_type="conversation",
                target_id=conversation.id,
                subject_id=conversation.member_id,
                details={
                    "run_id": str(run_id),
                    "record_id": str(record.id),
                    "seq": record.seq,
                    "reason": RETENTION,
                },
            )
        step.conversations_sealed = len(conversations)

    def _destroy(
        self,
        session: Session,
        conversations: list[Conversation],
        step: RetentionResult,
        run_id: uuid.UUID,
    ) -> None:
        members = {c.id: c.member_id for c in conversations}
        shredded, busy = destroy_unless_busy(session, list(members))
        step.skipped_busy = len(busy)
        for conversation_id, counts in shredded.items():
            member_id = members[conversation_id]
            audit.record(
                session,
                "retention.destroy",
                target_type="conversation",
                target_id=conversation_id,
                subject_id=member_id,
                details={
                    "run_id": str(run_id),
                    "messages": counts.messages,
                    "attachments": counts.attachments,
                    "wraps": counts.wraps,
                },
            )
        step.conversations_destroyed = len(shredded)

    # -- bookkeeping ---------------------------------------------------------------------

    def _address_phase(self, cutoffs: Cutoffs, result: RetentionResult) -> None:
        before = cutoffs.as_of - timedelta(days=self.runtime.settings.audit_address_days)
        key = self.runtime.keys.audit_mac
        while True:
            with self._step() as session:
                erased, refused = address_erasure.erase(session, key, before, self.batch_size)
            result.audit_addresses_erased += erased
            result.audit_addresses_refused = max(result.audit_addresses_refused, refused)
            if not erased:
                return

    def _advance(self, result: RetentionResult, step: RetentionResult) -> None:
        """Count a committed batch and report progress."""
        result.add(step)
        if self.progress is not None:
            self.progress(result.handled, max(self._total, result.handled))

    def _dry_run(
        self, cutoffs: Cutoffs, result: RetentionResult, run_id: uuid.UUID
    ) -> RetentionResult:
        with self._step() as session:
            result.due = list(
                list_due(session, cutoffs, seal_expired=self.seal_expired, batch=self.batch_size)
            )
        kinds = [item.kind for item in result.due]
        result.conversations_destroyed = kinds.count(DueKind.DESTROY)
        result.conversations_sealed = kinds.count(DueKind.SEAL)
        result.archive_records_destroyed = kinds.count(DueKind.ARCHIVE_DESTROY)
        self._summary("retention.dry_run", cutoffs, result, run_id)
        return result

    def _summary(
        self,
        action: str,
        cutoffs: Cutoffs,
        result: RetentionResult,
        run_id: uuid.UUID,
        *,
        outcome: str = "success",
    ) -> None:
        details: dict[str, Any] = {
            **result.counts(),
            "archive_records_refused": result.archive_records_refused,
            "live_refused": result.live_refused,
            "skipped_busy": result.skipped_busy,
            "batches": result.batches,
            "batch_size": self.batch_size,
            "as_of": iso_z(cutoffs.as_of),
            "retention_days": cutoffs.retention_days,
            "archive_retention_days": cutoffs.archive_retention_days,
            "seal_expired": self.seal_expired,
            "audit_addresses_erased": result.audit_addresses_erased,
            "audit_addresses_refused": result.audit_addresses_refused,
        }
        with self._step() as session:
            audit.record(
                session,
                action,
                target_type="retention",
                target_id=run_id,
                outcome=outcome,
                details=details,
            )
