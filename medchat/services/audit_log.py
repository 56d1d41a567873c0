"""Reading the audit trail (admins page through metadata; verification lives in ``audit``).

Each entry is shown with its network address while the log keeps it: sealed entries are opened
here, after their commitment is checked (``medchat.audit.addresses.reveal``); once retention has
erased it the address is null and ``address_erased`` true.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from medchat.audit.addresses import AddressKeys, is_erased, reveal
from medchat.models import AuditEntry
from medchat.services.context import ServiceContext


class AuditLogService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime
        self._address_keys = AddressKeys(seal=runtime.keys.profile, commit=runtime.keys.audit_mac)

    def page(self, *, before_seq: int | None, limit: int) -> list[AuditEntry]:
        """Newest first; keyset pagination on the sequence number (cost independent of size)."""
        statement = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
        if before_seq is not None:
            # The HTTP layer decodes the cursor (``decode_seq_cursor``: an integer in range).
            statement = statement.where(AuditEntry.seq < before_seq)
        return list(self.session.scalars(statement))

    def shown(self, entry: AuditEntry) -> dict[str, Any]:
        """What an admin sees of one entry."""
        return {
            "seq": entry.seq,
            "id": entry.id,
            "at": entry.at,
            "actor_id": entry.actor_id,
            "actor_role": entry.actor_role,
            "action": entry.action,
            "outcome": entry.outcome,
            "target_type": entry.target_type,
            "target_id": entry.target_id,
            "address": reveal(self._address_keys, entry),
            "address_erased": is_erased(entry),
            "details": json.loads(entry.details),
        }
