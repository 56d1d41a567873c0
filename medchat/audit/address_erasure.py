"""Erasing the audit log's network addresses once ``MEDCHAT_AUDIT_ADDRESS_DAYS`` have passed
(the retention job calls ``erase``); what is erased and why the chain still verifies is
``medchat.audit.addresses``'.

A database role that may only append to ``audit_entries`` needs UPDATE on the three columns this
writes and no other: ``GRANT UPDATE (address_sealed, address, address_erasure_mac) ON
audit_entries``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from medchat.audit.addresses import erasure_mac
from medchat.audit.entry_format import entry_columns, entry_hash
from medchat.models import AuditEntry


def erase(session: Session, key: bytes, before: datetime, batch: int) -> tuple[int, int]:
    """Erase one batch of the addresses recorded before ``before``; (erased, refused).

    Format 3: the sealed address goes. Formats 1 and 2: the clear address goes and the erasure
    MAC is written, for an entry whose hash holds with the address; one whose hash does not is
    refused (left in place, counted). Call again until it returns (0, 0) or only refusals.
    """
    sealed = list(
        session.scalars(
            select(AuditEntry.seq)
            .where(AuditEntry.address_sealed.is_not(None), AuditEntry.at < before)
            .order_by(AuditEntry.seq)
            .limit(batch)
        )
    )
    if sealed:
        session.execute(
            update(AuditEntry)
            .where(AuditEntry.seq.in_(sealed))
            .values(address_sealed=None)
            .execution_options(synchronize_session=False)
        )
    erased, refused = len(sealed), 0
    legacy = session.scalars(
        select(AuditEntry)
        .where(
            AuditEntry.format < 3,
            AuditEntry.address.is_not(None),
            AuditEntry.address_erasure_mac.is_(None),
            AuditEntry.at < before,
        )
        .order_by(AuditEntry.seq)
        .limit(batch)
    ).all()
    for entry in legacy:
        columns = entry_columns(entry)
        if entry_hash(columns, entry.prev_hash) != entry.entry_hash:
            refused += 1
            continue
        columns["address"] = None
        mac = erasure_mac(key, columns, entry.entry_hash)
        session.execute(
            update(AuditEntry)
            .where(AuditEntry.seq == entry.seq)
            .values(address=None, address_erasure_mac=mac)
            .execution_options(synchronize_session=False)
        )
        erased += 1
    return erased, refused
