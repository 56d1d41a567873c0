"""The append-only, hash-chained audit log and the chain heads.

Entries are spread over several chains (``chain``: ``audit``, ``audit/1`` ...), so concurrent
commits lock different heads instead of one. Within its chain each entry has a ``position``
(1, 2, 3 ...) and its ``entry_hash`` covers its own fields, its chain, position and global
``seq``, and the previous entry's hash; ``mac`` is an HMAC of that hash under a key outside the
database, so someone who can write the table can neither edit an entry nor recompute a chain.
``seq`` (a database sequence: unique, increasing, with gaps where a transaction rolled back)
is the total order the member's access log pages by. ``chain_heads`` records the last position
and hash of each chain (MAC'd as well), so a truncated tail is detected. Entries written
before chains were introduced are ``format`` 1: chain ``audit``, position = seq.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Index, LargeBinary, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from medchat.db import Base
from medchat.models.integrity import covered


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    __row_integrity__ = covered("hash chain, each entry MAC'd (audit-mac key), anchors")
    # A member's access log pages their entries newest first: one backward range scan.
    __table_args__ = (
        Index("ix_audit_entries_subject_seq", "subject_id", "seq"),
        # A chain never forks: one entry per position; ``verify`` walks a chain in seq order.
        UniqueConstraint("chain", "position"),
        Index("ix_audit_entries_chain_seq", "chain", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # No index on ``id`` or ``entry_hash``: random values, each a random leaf page per insert,
    # and nothing looks an entry up by either (migration 0026; ``tests/unit/test_indexes.py``).
    id: Mapped[uuid.UUID] = mapped_column()
    at: Mapped[datetime] = mapped_column(index=True)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    actor_role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(32))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # Indexed with seq (``ix_audit_entries_subject_seq``), which serves a lookup by it alone.
    subject_id: Mapped[uuid.UUID | None] = mapped_column()
    #: Clear only in entries of format 1 and 2 (until erased); format 3 seals it.
    address: Mapped[str | None] = mapped_column(String(64))
    #: Format 3: the keyed, salted commitment the hash covers, and the sealed salt and address
    #: (NULL once erased). ``medchat.audit.addresses``.
    address_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    address_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: Format 1 and 2 entries whose clear address was erased: checked in place of the hash.
    address_erasure_mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    mac: Mapped[bytes] = mapped_column(LargeBinary(32))
    chain: Mapped[str] = mapped_column(String(32), server_default="audit")
    position: Mapped[int] = mapped_column(BigInteger)
    #: 1: written before chains (hash without chain and position); 2: chains, clear address;
    #: 3: the current format (the address sealed and committed to).
    format: Mapped[int] = mapped_column(SmallInteger, server_default="1")


class ChainHead(Base):
    """Last position of a hash chain; its row lock serialises appends to that chain (no forks)."""

    __tablename__ = "chain_heads"
    __row_integrity__ = covered("MAC'd (audit-mac key or archive-signing key) over seq and hash")

    chain: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    mac: Mapped[bytes] = mapped_column(LargeBinary(32))
