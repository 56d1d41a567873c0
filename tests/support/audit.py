"""Reading the audit log back in tests; and, for the audit log's own tests, appending to it,
verifying it and tampering with it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select, text

from medchat import audit
from medchat.models import AuditEntry
from medchat.services.context import ServiceContext


def audit_entries(
    runtime: ServiceContext, action: str | None = None, *, prefix: str | None = None
) -> list[AuditEntry]:
    """The audit log's entries in chain order: every one, those of exactly ``action``, or
    those whose action starts with ``prefix`` (``"retention."``). Usable after the read's
    session has ended."""
    statement = select(AuditEntry).order_by(AuditEntry.seq)
    if action is not None:
        statement = statement.where(AuditEntry.action == action)
    if prefix is not None:
        statement = statement.where(AuditEntry.action.startswith(prefix))
    with runtime.database.transaction() as session:
        entries = list(session.scalars(statement))
        session.expunge_all()
    return entries


def audit_records(
    runtime: ServiceContext, action: str
) -> list[tuple[str | None, str | None, dict[str, Any]]]:
    """Each entry of ``action`` as (target type, target id, details), in chain order: what a
    test of a step's record compares whole."""
    return [
        (entry.target_type, entry.target_id, json.loads(entry.details))
        for entry in audit_entries(runtime, action)
    ]


def audit_actions(runtime: ServiceContext) -> list[tuple[str, str]]:
    """Each entry as (action, outcome), in chain order: what a test compares when it asks only
    whether a step was recorded and how it ended (a failed sign-in is audited although the
    request fails)."""
    return [(entry.action, entry.outcome) for entry in audit_entries(runtime)]


#: How many entries ``write_entries`` appends unless told: enough for a first, a middle and a
#: tail entry to tamper with.
ENTRIES = 5


def write_entries(
    runtime: ServiceContext, count: int = ENTRIES, *, per_transaction: int = 1
) -> None:
    """Append ``count`` entries, ``per_transaction`` per commit (each commit appends)."""
    written = 0
    while written < count:
        with runtime.database.transaction() as session:
            for _ in range(min(per_transaction, count - written)):
                written += 1
                audit.record(
                    session,
                    f"test.action_{written}",
                    target_type="thing",
                    target_id=f"thing-{written}",
                    details={"n": written},
                )


def verify(runtime: ServiceContext) -> audit.VerifyResult:
    """Walk the whole audit log under the app's own audit key, as the verify command does."""
    with runtime.database.transaction() as session:
        return audit.verify(session, runtime.keys.audit_mac)


def seqs(runtime: ServiceContext) -> list[int]:
    """Every entry's sequence number in order: gapless from 1 when no append was lost."""
    with runtime.database.transaction() as session:
        return list(session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)))


def execute(runtime: ServiceContext, sql: str, **params: Any) -> None:
    """Run raw SQL in a transaction of its own: how the audit tests tamper with the log, as
    someone with write access to the database would."""
    with runtime.database.transaction() as session:
        session.execute(text(sql), params)


@contextmanager
def heads_held(runtime: ServiceContext, *chains: str) -> Iterator[None]:
    """Another transaction holds these chains' head rows (as a commit in flight does)."""
    with runtime.database.engine.connect() as other, other.begin():
        held = other.execute(
            text("SELECT chain FROM chain_heads WHERE chain = ANY(:chains) FOR UPDATE"),
            {"chains": list(chains)},
        )
        assert sorted(held.scalars()) == sorted(chains)
        yield


def in_thread(work: Callable[[], Any]) -> threading.Thread:
    """Start ``work`` on a daemon thread: a second commit racing the test's own."""
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread
