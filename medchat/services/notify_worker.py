"""``medchat notify run``: deliver the notification outbox, on as many hosts as run it.

Each batch is one transaction: due rows (not delivered, ``next_attempt_at`` passed) are
claimed ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (another host's worker takes the next rows
instead of waiting; SQLite has one writer anyway), each is delivered by its channel
(``services.notify_channels``), and it is marked delivered, or given its next attempt, in
that same transaction. So a delivered row is never sent again (``delivered_at`` is under the
row tag: clearing it is refused like a planted row), and a failure loses nothing: the row
waits ``BACKOFF_BASE * 2^(attempts-1)``, at most ``BACKOFF_MAX``, and is tried again, for as
long as it takes. A crash between a send and the commit sends once more, with the same
idempotency key (the row id).

A row whose tag does not verify was written around the service: it is refused (audited as
``integrity.row_refused`` by ``storage.row_integrity``), sent nowhere and deleted. Each
delivery is audited (``notification.deliver``: row, kind, channel, outcome; no content).

``digest`` enqueues one e-mail per active clinician saying how many questions wait (the
count is read at delivery); its event id is the day's, so two hosts running it on the same
day enqueue one mail each.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat import audit
from medchat.clock import iso_z
from medchat.db import rows_changed
from medchat.errors import RowIntegrityFailure
from medchat.models import (
    Account,
    AccountStatus,
    Channel,
    NotificationKind,
    NotificationOutbox,
)
from medchat.services.notifications import enqueue
from medchat.services.notify_channels import Channels, DeliveryFailed
from medchat.storage.batch_jobs import BatchJob
from medchat.storage.row_integrity import is_tampered, skip_tampered

#: Delivered rows are kept this long (for the audit's ids to resolve), then deleted.
KEEP_DELIVERED = timedelta(days=30)
PURGE_LIMIT = 1000
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
DEFAULT_BATCH = 50
_DIGEST_NAMESPACE = uuid.UUID("6c1f3f0e-2f54-4d38-9a8e-8a4f0c7d2b11")


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure (1, 2, ...): doubling, capped."""
    step: timedelta = BACKOFF_BASE * (2 ** min(max(attempts - 1, 0), 16))
    return min(step, BACKOFF_MAX)


@dataclass
class NotifyResult:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    refused: int = 0
    purged: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)

    @property
    def handled(self) -> int:
        return self.sent + self.skipped + self.failed + self.refused + self.purged

    def add(self, other: NotifyResult) -> None:
        self.sent += other.sent
        self.skipped += other.skipped
        self.failed += other.failed
        self.refused += other.refused
        self.purged += other.purged
        for name, count in other.by_channel.items():
            self.by_channel[name] = self.by_channel.get(name, 0) + count

    def as_dict(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "skipped": self.skipped,
            "failed": self.failed,
            "refused": self.refused,
            "purged": self.purged,
            "sent_by_channel": dict(sorted(self.by_channel.items())),
        }


class NotifyWorker(BatchJob):
    def _claim(self, session: Session, now: datetime) -> list[NotificationOutbox]:
        statement = (
            select(NotificationOutbox)
            .where(
                NotificationOutbox.delivered_at.is_(None),
                NotificationOutbox.next_attempt_at <= now,
            )
            .order_by(NotificationOutbox.next_attempt_at, NotificationOutbox.id)
            .limit(self.batch_size)
        )
        if session.get_bind().dialect.name == "postgresql":
            statement = statement.with_for_update(skip_locked=True)
        return list(session.scalars(skip_tampered(statement)))

    def run_batch(self) -> NotifyResult:
        """Claim, deliver and mark one batch; one transaction."""
        result = NotifyResult()
        with self.runtime.database.transaction() as session:
            audit.set_context(session, self.audit_context)
            now = self.runtime.clock.now()
            rows = self._claim(session, now)
            channels = Channels(session, self.runtime)
            for row in rows:
                if is_tampered(row):
                    # Refused and audited as it loaded; it must never reach a channel.
                    session.expunge(row)
                    session.execute(
                        delete(NotificationOutbox)
                        .where(NotificationOutbox.id == row.id)
                        .execution_options(synchronize_session=False)
                    )
                    result.refused += 1
                    continue
                try:
                    outcome = channels.deliver(row)
                except RowIntegrityFailure:
                    # The recipient's account (or a row it needs) fails its tag: audited as it
                    # loaded; such a row never heals, so it is closed, not retried forever.
                    row.delivered_at = now
                    result.refused += 1
                    outcome = "refused"
                except DeliveryFailed:
                    row.attempts += 1
                    row.next_attempt_at = now + backoff(row.attempts)
                    result.failed += 1
                    outcome = "failed"
                else:
                    row.delivered_at = now
                    if outcome == "sent":
                        result.sent += 1
                        result.by_channel[row.channel] = result.by_channel.get(row.channel, 0) + 1
                    else:
                        result.skipped += 1
                audit.record(
                    session,
                    "notification.deliver",
                    target_type="notification",
                    target_id=row.id,
                    outcome={"failed": "failed", "refused": "denied"}.get(outcome, "success"),
                    details={
                        "kind": row.kind,
                        "channel": row.channel,
                        "result": outcome,
                        "attempts": row.attempts,
                    },
                )
        return result

    def run(self, *, max_batches: int | None = None) -> NotifyResult:
        """Batches until none is due (or ``max_batches``): what one timer start delivers.

        A batch whose rows all failed ends the run: they wait for their next attempt.
        """
        total = NotifyResult()
        total.purged = self.purge_delivered()
        batches = 0
        while max_batches is None or batches < max_batches:
            result = self.run_batch()
            batches += 1
            total.add(result)
            if result.handled < self.batch_size or result.failed == result.handled:
                break
        return total

    def purge_delivered(self) -> int:
        """Delete up to ``PURGE_LIMIT`` rows delivered more than ``KEEP_DELIVERED`` ago."""
        cutoff = self.runtime.clock.now() - KEEP_DELIVERED
        with self.runtime.database.transaction() as session:
            old = select(NotificationOutbox.id).where(
                NotificationOutbox.delivered_at.is_not(None),
                NotificationOutbox.delivered_at < cutoff,
            )
            ids = list(session.scalars(old.limit(PURGE_LIMIT)))
            if not ids:
                return 0
            result = session.execute(
                delete(NotificationOutbox)
                .where(NotificationOutbox.id.in_(ids), NotificationOutbox.delivered_at < cutoff)
                .execution_options(synchronize_session=False)
            )
            purged = rows_changed(result)
            # A deletion is a data change: audited, as the token purge's and retention's are.
            audit.record(
                session, "notification.purge", details={"purged": purged, "before": iso_z(cutoff)}
            )
            return purged

    def enqueue_digest(self) -> int:
        """One digest mail per active clinician, once per day however often it runs."""
        day = self.runtime.clock.now().date().isoformat()
        event = uuid.uuid5(_DIGEST_NAMESPACE, day)
        with self.runtime.database.transaction() as session:
            audit.set_context(session, self.audit_context)
            clinicians = list(
                session.scalars(
                    select(Account.id).where(
                        Account.role == Role.CLINICIAN, Account.status == AccountStatus.ACTIVE
                    )
                )
            )
            already = set(
                session.scalars(
                    select(NotificationOutbox.account_id).where(
                        NotificationOutbox.event_id == event
                    )
                )
            )
            queued = 0
            for account_id in clinicians:
                if account_id in already:
                    continue
                queued += enqueue(
                    session,
                    self.runtime,
                    NotificationKind.DIGEST,
                    account_id,
                    channels=(Channel.EMAIL,),
                    event_id=event,
                )
            try:
                session.flush()
            except IntegrityError:
                # Another host enqueued today's digest at the same moment: theirs stands.
                session.rollback()
                return 0
            audit.record(session, "notification.digest", details={"queued": queued})
        return queued
