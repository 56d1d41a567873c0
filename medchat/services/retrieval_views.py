"""What an officer sees of a retrieval request, and whom the request is about.

The request's stored status says pending or approved; an approval past its time reads as
expired, decided here once for the list, the single view and the API. The member a sealed
record is about comes from its signed metadata, for the audit trail's subject (their access
log shows compliance retrievals).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from medchat.models import ArchiveRecord, RetrievalRequest

PENDING = "pending"
APPROVED = "approved"
EXPIRED = "expired"


@dataclass
class RetrievalView:
    """A request as officers see it (the justification is for the approver to judge)."""

    id: uuid.UUID
    record_id: uuid.UUID
    conversation_id: uuid.UUID
    status: str
    requested_by: uuid.UUID
    requested_at: datetime
    approved_by: uuid.UUID | None
    approved_at: datetime | None
    expires_at: datetime | None
    justification: str


def retrieval_view(
    row: RetrievalRequest, record: ArchiveRecord, justification: str, now: datetime
) -> RetrievalView:
    status = row.status
    if status == APPROVED and row.expires_at and now >= row.expires_at:
        status = EXPIRED
    return RetrievalView(
        id=row.id,
        record_id=record.id,
        conversation_id=record.conversation_id,
        status=status,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        approved_by=row.approved_by,
        approved_at=row.approved_at,
        expires_at=row.expires_at,
        justification=justification,
    )


def member_of(record: ArchiveRecord) -> uuid.UUID | None:
    """The member a record is about (from its metadata), for the audit trail's subject."""
    try:
        return uuid.UUID(json.loads(record.metadata_json)["member_id"])
    except (ValueError, KeyError, TypeError):
        return None
