"""Reading the audit trail (admins page through metadata; verification lives in ``audit``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from medchat.models import AuditEntry


class AuditLogService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def page(self, *, before_seq: int | None, limit: int) -> list[AuditEntry]:
        """Newest first; keyset pagination on the sequence number (cost independent of size)."""
        statement = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
        if before_seq is not None:
            # The HTTP layer decodes the cursor (``decode_seq_cursor``: an integer in range).
            statement = statement.where(AuditEntry.seq < before_seq)
        return list(self.session.scalars(statement))
