"""Metrics read from the database when ``/metrics`` is scraped (issue 13 item 11).

What is true of the whole service rather than of one process, so it is read, not counted:

- ``medchat_rewrap_backlog``, ``medchat_rewrap_oldest_request_age_seconds``: conversations
  waiting to be re-sealed to a member's new key after a password reset (``services.rewrap``;
  a clinician's session drains them). A backlog that ages means no doctor with the role key
  signs in, or re-seals fail.
- ``medchat_audit_chain_head_age_seconds``, ``medchat_audit_chain_length``: time since the
  newest audit entry, and how many there are. Every sign-in appends one: a head that stops
  moving while requests are answered means appends fail.
- ``medchat_questions_waiting``, ``medchat_questions_overdue``: open questions, and those
  waiting longer than the expected response time (``MEDCHAT_RESPONSE_TARGET_HOURS``, the
  clinician queue's ``overdue`` flag); ``medchat_questions_urgent_waiting``: open ones the
  member marked urgent. Alert on overdue above zero during service hours.
- ``medchat_retention_last_run_*``: the newest ``retention.run`` audit entry (the daily
  ``medchat retention run`` writes one per run, on any host): when it ran, whether it
  succeeded, and its counts. Alert when it is older than a day and a half, or failed.

These are counts and times, read by the service's own role from a database the security model
treats as untrusted: a writer there could make them lie, never make the service do anything.
The audit chain's integrity is ``medchat audit verify``'s to check, not this gauge's. A
database that does not answer gives ``medchat_state_up 0`` (the request metrics are still
served), never a failed scrape.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, cast

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medchat.audit.verification import CHAINS as AUDIT_CHAINS
from medchat.clock import Clock
from medchat.models import AuditEntry, ChainHead, Conversation, ConversationStatus, RewrapRequest

log = logging.getLogger("medchat.metrics")

#: The counts of a ``retention.run`` entry's details that are exposed.
RETENTION_COUNTS = (
    "conversations_destroyed",
    "conversations_sealed",
    "archive_records_destroyed",
    "archive_records_refused",
    "live_refused",
    "skipped_busy",
)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class StateCollector(Collector):
    """Reads the values above through ``session`` when collected."""

    def __init__(self, session: Session, clock: Clock, response_target: timedelta) -> None:
        self.session = session
        self.clock = clock
        self.response_target = response_target

    def collect(self) -> Iterator[Metric]:
        try:
            metrics = list(self._read())
        except Exception as error:  # a database outage must not fail the scrape
            log.warning("metrics: database state unavailable: %s", type(error).__name__)
            self.session.rollback()
            yield _gauge("medchat_state_up", "Whether the database state could be read.", 0)
            return
        yield _gauge("medchat_state_up", "Whether the database state could be read.", 1)
        yield from metrics

    def _read(self) -> Iterator[Metric]:
        now = self.clock.now()
        backlog, first = self.session.execute(
            select(func.count(), func.min(RewrapRequest.created_at))
        ).one()
        oldest = cast("datetime | None", first)  # None without any request
        yield _gauge("medchat_rewrap_backlog", "Conversations waiting to be re-sealed.", backlog)
        yield _gauge(
            "medchat_rewrap_oldest_request_age_seconds",
            "Age of the oldest re-wrap request (0 without any).",
            (now - oldest).total_seconds() if oldest is not None else 0,
        )

        # Every chain's head (medchat.audit.chain): entries are their positions added up; the
        # newest entry is the one with the highest global seq.
        length = self.session.scalar(
            select(func.coalesce(func.sum(ChainHead.seq), 0)).where(
                ChainHead.chain.in_(AUDIT_CHAINS)
            )
        )
        newest = self.session.scalar(select(AuditEntry.at).order_by(AuditEntry.seq.desc()).limit(1))
        yield _gauge("medchat_audit_chain_length", "Entries in the audit chains.", length or 0)
        if newest is not None:
            yield _gauge(
                "medchat_audit_chain_head_age_seconds",
                "Seconds since the newest audit entry was written.",
                (now - newest).total_seconds(),
            )

        yield from self._questions(now)
        yield from self._retention()

    def _questions(self, now: datetime) -> Iterator[Metric]:
        late = now - self.response_target
        waiting, overdue, urgent = self.session.execute(
            select(
                func.count(),
                func.count().filter(Conversation.status_since < late),
                func.count().filter(Conversation.urgent.is_(True)),
            ).where(Conversation.status == ConversationStatus.OPEN)
        ).one()
        yield _gauge("medchat_questions_waiting", "Open questions waiting for a doctor.", waiting)
        yield _gauge(
            "medchat_questions_overdue",
            "Open questions waiting longer than the expected response time.",
            overdue,
        )
        yield _gauge("medchat_questions_urgent_waiting", "Open questions marked urgent.", urgent)

    def _retention(self) -> Iterator[Metric]:
        row = self.session.execute(
            select(AuditEntry.at, AuditEntry.outcome, AuditEntry.details)
            .where(AuditEntry.action == "retention.run")
            .order_by(AuditEntry.seq.desc())
            .limit(1)
        ).first()
        if row is None:
            return
        at, outcome, details = row
        yield _gauge(
            "medchat_retention_last_run_timestamp_seconds",
            "When the newest retention run ended (Unix time).",
            at.timestamp(),
        )
        yield _gauge(
            "medchat_retention_last_run_success",
            "1 when the newest retention run succeeded, 0 when it failed.",
            1 if outcome == "success" else 0,
        )
        counts = GaugeMetricFamily(
            "medchat_retention_last_run_items",
            "What the newest retention run did, by result.",
            labels=["result"],
        )
        for name, value in _counts(details).items():
            counts.add_metric([name], value)
        yield counts


def _counts(details: str) -> dict[str, int]:
    """The run's counts from its audit details (numbers only; anything else is left out)."""
    try:
        parsed: Any = json.loads(details or "{}")
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {
        name: parsed[name]
        for name in RETENTION_COUNTS
        if isinstance(parsed.get(name), int) and not isinstance(parsed.get(name), bool)
    }
