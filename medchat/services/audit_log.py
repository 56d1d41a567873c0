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
            # bool is an int in Python, but no sequence number.
            if not isinstance(before_seq, int) or isinstance(before_seq, bool):
                from medchat.errors import ValidationFailed

                raise ValidationFailed(details={"cursor": ["Not a valid cursor."]})
            statement = statement.where(AuditEntry.seq < before_seq)
        return list(self.session.scalars(statement))
