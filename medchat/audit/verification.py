"""Verifying the audit chains: every chain walked, the first broken entry named.

An edited entry fails its hash (or, recomputed, its MAC: the key is outside the database); a
deleted one leaves a hole in its chain's positions; swapped ``seq`` values put its chain out of
order (each entry's hash covers its ``seq``); a truncated tail no longer reaches the position
its head records; a rewound head fails its MAC; a head that is missing (or a chain that was
removed whole, head and entries) is named. A truncation that puts back an older, genuine head is
caught only against a signed anchor (``medchat.audit.anchor``), which signs ``checked_heads``.

``first_bad`` is the global ``seq`` of the first entry concerned: the entry itself when it is
present, else one past the last good entry of its chain (where the missing one would be).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from access_control import crypto
from medchat.audit.addresses import legacy_erasure_holds
from medchat.audit.entry_format import _MAC_LABEL, entry_columns, entry_hash
from medchat.audit.hash_chain import AUDIT, GENESIS_HASH
from medchat.audit.heads import MAX_CHAINS, chain_name
from medchat.models import AuditEntry, ChainHead

#: Every chain a deployment may have appended to (heads made by migration 0015).
CHAINS = tuple(chain_name(index) for index in range(MAX_CHAINS))


@dataclass
class VerifyResult:
    ok: bool
    entries: int
    first_bad: int | None = None
    reason: str | None = None
    #: Entries the heads account for (the sum of their positions; ``entries`` when intact).
    head_seq: int = 0
    #: The hash of the newest entry (highest ``seq``), or the genesis hash of an empty log.
    head_hash: str = field(default="")
    #: Each chain's verified length (position of its head), for anchors; not printed.
    heads: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_bad": self.first_bad,
            "reason": self.reason,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
        }


@dataclass
class _Fault:
    seq: int | None
    reason: str


def _rows(session: Session, chain: str, batch: int = 2000) -> Iterator[AuditEntry]:
    last = None
    while True:
        query = select(AuditEntry).where(AuditEntry.chain == chain)
        if last is not None:
            query = query.where(AuditEntry.seq > last)
        rows = session.scalars(query.order_by(AuditEntry.seq).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def _hash_holds(entry: AuditEntry, prev_hash: bytes, key: bytes) -> bool:
    """A format 1 or 2 entry whose address was erased is checked by its erasure MAC (over
    its stored hash and every other field); any other by recomputing its hash. A format 3
    entry holds no clear address and no erasure MAC (formats 1 and 2 only): one planted in
    either fails too."""
    columns = entry_columns(entry)
    if entry.format >= 3:
        if entry.address is not None or entry.address_erasure_mac is not None:
            return False
    elif entry.address_erasure_mac is not None:
        return legacy_erasure_holds(key, columns, entry.entry_hash, entry.address_erasure_mac)
    return entry_hash(columns, prev_hash) == entry.entry_hash


def _walk(session: Session, chain: str, key: bytes) -> tuple[int, int, bytes, int, _Fault | None]:
    """(entries, last position, last hash, last seq, first fault) of one chain, in seq order."""
    prev_hash, position, count, last_seq = GENESIS_HASH, 0, 0, 0
    for entry in _rows(session, chain):
        count += 1
        where = f"chain {chain} position {position + 1}"
        if entry.position != position + 1:
            if entry.position > position + 1:
                return (
                    count,
                    position,
                    prev_hash,
                    last_seq,
                    _Fault(last_seq + 1, f"an entry is missing before seq {entry.seq} ({where})"),
                )
            return (
                count,
                position,
                prev_hash,
                last_seq,
                _Fault(entry.seq, f"entry is out of order ({where})"),
            )
        if entry.prev_hash != prev_hash:
            return (
                count,
                position,
                prev_hash,
                last_seq,
                _Fault(entry.seq, "does not link to the previous entry"),
            )
        if not _hash_holds(entry, prev_hash, key):
            return (
                count,
                position,
                prev_hash,
                last_seq,
                _Fault(entry.seq, "content does not match its hash"),
            )
        try:
            crypto.verify_mac(key, entry.mac, _MAC_LABEL, entry.entry_hash)
        except crypto.IntegrityCheckFailed:
            return (
                count,
                position,
                prev_hash,
                last_seq,
                _Fault(entry.seq, "MAC not made with the audit key"),
            )
        prev_hash, position, last_seq = entry.entry_hash, entry.position, entry.seq
    return count, position, prev_hash, last_seq, None


def _head_fault(
    head: ChainHead, key: bytes, position: int, last_hash: bytes, last_seq: int
) -> _Fault | None:
    if head.seq != position or head.entry_hash != last_hash:
        return _Fault(
            last_seq + 1,
            f"chain {head.chain} ends at position {position} but its head records {head.seq}",
        )
    if head.seq:
        try:
            crypto.verify_mac(key, head.mac, AUDIT.head_label, head.seq, head.entry_hash)
        except crypto.IntegrityCheckFailed:
            return _Fault(
                last_seq, f"the head of chain {head.chain}: MAC not made with the audit key"
            )
    return None


def verify(session: Session, key: bytes) -> VerifyResult:
    """Walk every chain; report the first entry (lowest seq) that breaks one, or ok."""
    heads = {
        head.chain: head
        for head in session.scalars(select(ChainHead).where(ChainHead.chain.in_(CHAINS)))
    }
    result = VerifyResult(True, 0, head_hash=GENESIS_HASH.hex())
    faults: list[_Fault] = []
    newest = 0
    for chain in CHAINS:
        count, position, last_hash, last_seq, fault = _walk(session, chain, key)
        result.entries += count
        head = heads.get(chain)
        if head is None:
            faults.append(_Fault(None, f"the head of chain {chain} is missing"))
            continue
        result.head_seq += head.seq
        result.heads[chain] = position
        fault = fault or _head_fault(head, key, position, last_hash, last_seq)
        if fault is not None:
            faults.append(fault)
        elif last_seq > newest:
            newest, result.head_hash = last_seq, last_hash.hex()
    if faults:
        first = min(faults, key=lambda f: (f.seq is None, f.seq or 0))
        result.ok, result.first_bad, result.reason = False, first.seq, first.reason
    return result


def checked_heads(session: Session, key: bytes) -> list[tuple[str, int, bytes]]:
    """Every chain's head (chain, position, entry hash) once its MAC and its entry check out:
    what an anchor signs. ``audit`` is always listed; other chains once they hold entries.

    A point check per head, not the walk of ``verify``. Raises ``IntegrityCheckFailed``
    naming what does not hold.
    """
    heads = {
        head.chain: head
        for head in session.scalars(select(ChainHead).where(ChainHead.chain.in_(CHAINS)))
    }
    checked = []
    for chain in CHAINS:
        head = heads.get(chain)
        if head is None:
            raise crypto.IntegrityCheckFailed(f"the head of chain {chain} is missing")
        if head.seq == 0:
            if chain == CHAINS[0]:
                checked.append((chain, 0, GENESIS_HASH))
            continue
        try:
            crypto.verify_mac(key, head.mac, AUDIT.head_label, head.seq, head.entry_hash)
        except crypto.IntegrityCheckFailed:
            raise crypto.IntegrityCheckFailed(
                f"the head of chain {chain}: MAC not made with the audit key"
            ) from None
        entry = session.scalar(
            select(AuditEntry).where(AuditEntry.chain == chain, AuditEntry.position == head.seq)
        )
        if entry is None or entry.entry_hash != head.entry_hash:
            raise crypto.IntegrityCheckFailed(
                f"chain {chain}: position {head.seq} is not the entry its head records"
            )
        try:
            crypto.verify_mac(key, entry.mac, _MAC_LABEL, entry.entry_hash)
        except crypto.IntegrityCheckFailed:
            raise crypto.IntegrityCheckFailed(
                f"chain {chain} position {head.seq}: MAC not made with the audit key"
            ) from None
        checked.append((chain, head.seq, head.entry_hash))
    return checked
