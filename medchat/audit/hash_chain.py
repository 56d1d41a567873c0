"""What the two hash chains share: the audit log (``medchat.audit.chain``) and the sealed-archive
ledger (``medchat.archive.ledger``).

Each is a sequence of rows numbered from 1, each row's hash covering its fields and its
predecessor's hash, the first row's predecessor being ``GENESIS_HASH``. Each has a head row
(``ChainHead``: the chain's name, the last sequence number and hash) carrying a MAC over
those two under a key outside the database, so a truncated tail is caught: ``HashChain``
makes, checks and reads it. The MAC's label is the chain's own (``AUDIT``, ``ARCHIVE``), so
a head MAC of one chain is never one of the other even under the same key.

Rows, their hashes and what signs or MACs each row stay with each chain. The names, labels
and encodings here are in every chain already written: changing one by a byte makes every
existing chain fail verification (``tests/unit/test_hash_chain.py`` pins them).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from access_control import crypto
from medchat.models import ChainHead

#: The hash a chain's first row links to.
GENESIS_HASH = bytes(32)


@dataclass(frozen=True)
class Head:
    """A chain's head row as stored: the last sequence number, its hash, and the MAC."""

    seq: int
    entry_hash: bytes
    mac: bytes


@dataclass(frozen=True)
class HashChain:
    """One chain: its name (``ChainHead.chain``) and the label of its head MAC."""

    name: str
    head_label: str

    def head_mac(self, key: bytes, seq: int, entry_hash: bytes) -> bytes:
        """The MAC the head carries when ``seq`` is the last row and ``entry_hash`` its hash."""
        return crypto.mac(key, self.head_label, seq, entry_hash)

    def verify_head_mac(self, key: bytes, head: Head) -> None:
        """Raise ``IntegrityCheckFailed`` unless ``key`` made the head's MAC."""
        crypto.verify_mac(key, head.mac, self.head_label, head.seq, head.entry_hash)

    def read_head(self, session: Session) -> Head | None:
        """The head row, or ``None`` when it is missing (a broken chain)."""
        row = session.execute(
            select(ChainHead.seq, ChainHead.entry_hash, ChainHead.mac).where(
                ChainHead.chain == self.name
            )
        ).one_or_none()
        return None if row is None else Head(row.seq, row.entry_hash, row.mac)


AUDIT = HashChain("audit", "medchat/audit-head/v1")
ARCHIVE = HashChain("archive", "medchat/archive-head/v1")
