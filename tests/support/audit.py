"""Reading the audit log back in tests."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

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
