"""What a retention run did, or for a dry run would do: the counts ``medchat retention run``
prints (API.md's three and the two that explain a shortfall) and a dry run's listing; and the
refusal of a run that would destroy before retention is due."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from medchat.clock import iso_z
from medchat.services.retention_due import DueItem


class EarlyDestruction(ValueError):
    """A real run was asked for as of a time that has not come yet."""

    def __init__(self, as_of: datetime, now: datetime) -> None:
        super().__init__(
            f"as of {iso_z(as_of)} is later than now ({iso_z(now)}): a run never destroys "
            "before retention is due (a dry run may look ahead)"
        )


@dataclass
class RetentionResult:
    """What a run did (or, for a dry run, would do)."""

    as_of: datetime
    dry_run: bool
    conversations_destroyed: int = 0
    conversations_sealed: int = 0
    archive_records_destroyed: int = 0
    #: Archive records left in place: their record or stored content failed its check.
    archive_records_refused: int = 0
    #: Live conversations left in place: the audit trail contradicts their question time
    #: (``medchat.services.question_times``).
    live_refused: int = 0
    #: Due rows whose wraps another transaction (a rotation, a re-wrap) held: the next run's.
    skipped_busy: int = 0
    batches: int = 0
    #: Audit entries whose network address was erased; legacy entries left in place because
    #: their hash did not hold (``medchat.audit.address_erasure``).
    audit_addresses_erased: int = 0
    audit_addresses_refused: int = 0
    #: A dry run's listing.
    due: list[DueItem] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return (
            self.conversations_destroyed
            + self.conversations_sealed
            + self.archive_records_destroyed
            + self.archive_records_refused
            + self.live_refused
            + self.skipped_busy
        )

    def counts(self) -> dict[str, int]:
        """The three counts of the CLI contract (API.md ``medchat retention run``)."""
        return {
            "conversations_destroyed": self.conversations_destroyed,
            "conversations_sealed": self.conversations_sealed,
            "archive_records_destroyed": self.archive_records_destroyed,
        }

    def add(self, other: RetentionResult) -> None:
        self.conversations_destroyed += other.conversations_destroyed
        self.conversations_sealed += other.conversations_sealed
        self.archive_records_destroyed += other.archive_records_destroyed
        self.archive_records_refused += other.archive_records_refused
        self.live_refused += other.live_refused
        self.skipped_busy += other.skipped_busy
        self.batches += 1
