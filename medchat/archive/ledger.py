"""The sealed-archive ledger: append-only records, hash-chained and signed, verified end to end.

SECURITY-MODEL "Deletion, sealed archive, retention". Each record names a conversation that
entered the archive ("sealed") or whose archived content retention removed ("destroyed",
``refers_to`` the sealed record), with its metadata (ids, times, message count, reason) and the
content hash of ``medchat.archive.content_hashes``. Threat: someone who can write the database
edits a
record, the content it vouches for, or the order of records, and recomputes the hashes.

- Each record carries its hash (over all its fields and its predecessor's hash) and an
  Ed25519 signature over that hash by the archive-signing key; ``medchat.archive.records``
  defines both (``RecordKind``, ``RecordFields``, ``canonical_json`` and
  ``verify_record_signature`` are re-exported here).
- Appends take the ``archive`` chain head's row lock first (``UPDATE ... RETURNING``, as
  ``medchat.audit.chain`` does): concurrent sealings on PostgreSQL queue on it and never fork the
  chain; on SQLite every unit of work already holds the write lock. The head keeps the last
  sequence number and hash under a MAC only the signing key's holder can make, so a truncated
  tail is caught. The genesis hash, the head and its MAC are those of every hash chain
  (``medchat.audit.hash_chain``).

``verify`` walks the records in sequence order in batches and names the first bad one: a gap,
a broken link, fields that do not match their hash, a signature the pinned key did not make, a
"destroyed" record naming no earlier sealed record, a sealed conversation whose stored content
no longer matches its hash (or that was made live again), content gone without a "destroyed"
record, or a head that disagrees with the last record. What it cannot see: the whole database
rolled back to an earlier consistent state; ``docs/archive.md`` says how to anchor the head.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.orm import Session

from access_control import crypto
from access_control.signatures import signing_key_fingerprint
from medchat.archive.content_hashes import content_hashes
from medchat.archive.records import (
    _SIGNATURE_LABEL,
    RecordFields,
    RecordKind,
    canonical_json,
    verify_record_signature,
)
from medchat.archive.signing import ArchiveSigner
from medchat.audit.hash_chain import ARCHIVE, GENESIS_HASH, Head
from medchat.models import ArchiveRecord, ChainHead, ConversationStatus

# The records' names come from medchat.archive.records and are re-exported (see above).
__all__ = [
    "ARCHIVE_CHAIN",
    "GENESIS_HASH",
    "VERIFY_BATCH",
    "LedgerReport",
    "RecordFields",
    "RecordKind",
    "append",
    "append_destroyed",
    "canonical_json",
    "check_record",
    "verify",
    "verify_record_signature",
]

ARCHIVE_CHAIN = ARCHIVE.name
VERIFY_BATCH = 500


def check_record(session: Session, public_key: bytes, record: ArchiveRecord) -> None:
    """Check one sealed record before its content is used (a retrieval): its hash, its
    signature under ``public_key`` (the pin) and the stored content's hash. Raises
    ``IntegrityCheckFailed``; its place in the chain is ``verify``'s job."""
    if RecordFields.of(record).record_hash() != record.record_hash:
        raise crypto.IntegrityCheckFailed
    verify_record_signature(public_key, record.signing_key_id, record.record_hash, record.signature)
    stored = content_hashes(session, [record.conversation_id]).get(record.conversation_id)
    if stored is None or not crypto.constant_time_equal(stored.content_hash, record.content_hash):
        raise crypto.IntegrityCheckFailed


def append(
    session: Session,
    signer: ArchiveSigner,
    *,
    kind: RecordKind,
    conversation_id: uuid.UUID,
    member_index: bytes,
    reason: str,
    message_count: int,
    question_at: datetime,
    sealed_at: datetime,
    content_hash: bytes,
    metadata: dict[str, Any],
    refers_to: uuid.UUID | None = None,
) -> ArchiveRecord:
    """Append one signed record at the next sequence number, in the caller's transaction.

    The head row is locked first and stays locked until the transaction ends, so a concurrent
    append waits and then chains onto this record (never onto the same predecessor).
    """
    seq, prev_hash = session.execute(
        update(ChainHead)
        .where(ChainHead.chain == ARCHIVE_CHAIN)
        .values(seq=ChainHead.seq + 1)
        .returning(ChainHead.seq, ChainHead.entry_hash)
    ).one()
    fields = RecordFields(
        seq=seq,
        id=uuid.uuid4(),
        kind=kind,
        refers_to=refers_to,
        conversation_id=conversation_id,
        member_index=member_index,
        reason=reason,
        message_count=message_count,
        question_at=question_at,
        sealed_at=sealed_at,
        content_hash=content_hash,
        metadata_json=canonical_json(metadata),
        prev_hash=prev_hash,
    )
    record_hash = fields.record_hash()
    record = ArchiveRecord(
        **asdict(fields),
        record_hash=record_hash,
        signature=signer.sign(_SIGNATURE_LABEL, signer.fingerprint, record_hash),
        signing_key_id=signer.fingerprint,
    )
    session.add(record)
    session.flush()
    session.execute(
        update(ChainHead)
        .where(ChainHead.chain == ARCHIVE_CHAIN)
        .values(entry_hash=record_hash, mac=ARCHIVE.head_mac(signer.head_mac_key, seq, record_hash))
    )
    return record


def append_destroyed(
    session: Session, signer: ArchiveSigner, sealed: ArchiveRecord, *, reason: str, at: datetime
) -> ArchiveRecord:
    """Record that retention removed the content of ``sealed`` (its ciphertexts and wraps are
    deleted in the same transaction). The sealed record stays: the ledger only grows."""
    return append(
        session,
        signer,
        kind=RecordKind.DESTROYED,
        refers_to=sealed.id,
        conversation_id=sealed.conversation_id,
        member_index=sealed.member_index,
        reason=reason,
        message_count=sealed.message_count,
        question_at=sealed.question_at,
        sealed_at=at,
        content_hash=sealed.content_hash,
        metadata={"v": 1, "destroys": str(sealed.id)},
    )


# -- verification ----------------------------------------------------------------------------


@dataclass
class LedgerReport:
    """The outcome of a walk: ok, or the first bad record (its id and sequence) and why."""

    ok: bool
    records: int
    first_bad: uuid.UUID | None = None
    first_bad_seq: int | None = None
    reason: str | None = None
    head_seq: int = 0
    head_hash: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "first_bad": None if self.first_bad is None else str(self.first_bad),
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
        }


class _Bad(Exception):
    def __init__(self, seq: int | None, record_id: uuid.UUID | None, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.record_id, self.reason = seq, record_id, reason


_COLUMNS = (
    *(getattr(ArchiveRecord, name) for name in RecordFields.__dataclass_fields__),
    ArchiveRecord.record_hash,
    ArchiveRecord.signature,
    ArchiveRecord.signing_key_id,
)


def _batches(session: Session, size: int, last_seq: int) -> Iterator[list[Row[Any]]]:
    statement = (
        select(*_COLUMNS)
        .where(ArchiveRecord.seq <= last_seq)
        .order_by(ArchiveRecord.seq)
        .limit(size)
    )
    rows = session.execute(statement).all()
    while rows:
        yield list(rows)
        rows = session.execute(statement.where(ArchiveRecord.seq > rows[-1].seq)).all()


class _Walk:
    """State of one verification walk (what the records seen so far establish)."""

    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key
        self.fingerprint = signing_key_fingerprint(public_key)
        self.prev_hash = GENESIS_HASH
        self.count = 0
        # Sealed record id -> conversation id, and sealed records whose content is gone
        # (they are fine only if a later "destroyed" record refers to them).
        self.sealed: dict[uuid.UUID, uuid.UUID] = {}
        self.destroyed: set[uuid.UUID] = set()
        self.missing: dict[uuid.UUID, int] = {}

    def link(self, row: Row[Any]) -> None:
        """Check one record's place, hash, signature and kind; raise ``_Bad`` if any fails."""
        expected = self.count + 1
        if row.seq != expected:
            why = f"record {expected} is missing" if row.seq > expected else "out of order"
            raise _Bad(row.seq, row.id, why)
        if row.prev_hash != self.prev_hash:
            raise _Bad(row.seq, row.id, "does not link to the previous record")
        if RecordFields.of(row).record_hash() != row.record_hash:
            raise _Bad(row.seq, row.id, "its fields do not match its hash")
        if row.signing_key_id != self.fingerprint:
            raise _Bad(row.seq, row.id, "names a signing key that is not the pinned one")
        try:
            verify_record_signature(
                self.public_key, row.signing_key_id, row.record_hash, row.signature
            )
        except crypto.IntegrityCheckFailed:
            raise _Bad(
                row.seq, row.id, "its signature is not the pinned archive-signing key's"
            ) from None
        if row.kind == RecordKind.SEALED:
            self.sealed[row.id] = row.conversation_id
        elif row.kind == RecordKind.DESTROYED:
            if self.sealed.get(row.refers_to) != row.conversation_id:
                raise _Bad(row.seq, row.id, "destroys no earlier sealed record of its conversation")
            self.destroyed.add(row.refers_to)
            self.missing.pop(row.refers_to, None)
        else:
            raise _Bad(row.seq, row.id, f"unknown kind {row.kind!r}")
        self.prev_hash = row.record_hash
        self.count += 1

    def check_content(self, session: Session, rows: list[Row[Any]]) -> None:
        """Recompute the content hash of every sealed record whose conversation still exists."""
        sealed = [row for row in rows if row.kind == RecordKind.SEALED]
        stored = content_hashes(session, {row.conversation_id for row in sealed})
        for row in sealed:
            state = stored.get(row.conversation_id)
            if state is None:
                if row.id not in self.destroyed:
                    self.missing[row.id] = row.seq
            elif not crypto.constant_time_equal(state.content_hash, row.content_hash):
                raise _Bad(row.seq, row.id, "its conversation's stored content does not match")
            elif state.status != ConversationStatus.SEALED:
                raise _Bad(row.seq, row.id, "its conversation was made live again")


def verify(
    session: Session, public_key: bytes, head_mac_key: bytes, *, batch: int = VERIFY_BATCH
) -> LedgerReport:
    """Walk the whole ledger; report the first bad record, or ok with the head to anchor.

    ``public_key`` is the pinned archive-signing key (never one read from the database). The
    head is read first and the walk stops at it: records appended while the walk runs (each
    commits with its head update) belong to a later verification, not to a false alarm.
    """
    walk = _Walk(public_key)
    head = ARCHIVE.read_head(session)
    try:
        if head is None:
            raise _Bad(None, None, "the ledger head is missing")
        for rows in _batches(session, batch, head.seq):
            broken: _Bad | None = None
            linked = []
            for row in rows:
                try:
                    walk.link(row)
                except _Bad as bad:
                    broken = bad
                    break
                linked.append(row)
            # Content problems of records before the break come first (sequence order).
            walk.check_content(session, linked)
            if broken is not None:
                raise broken
        _check_end(session, walk, head, head_mac_key)
    except _Bad as bad:
        return LedgerReport(
            False,
            walk.count,
            bad.record_id,
            bad.seq,
            bad.reason,
            head_seq=head.seq if head else 0,
            head_hash=head.entry_hash.hex() if head else "",
        )
    return LedgerReport(True, walk.count, head_seq=head.seq, head_hash=head.entry_hash.hex())


def _record_id_at(session: Session, seq: int) -> uuid.UUID | None:
    return session.scalar(select(ArchiveRecord.id).where(ArchiveRecord.seq == seq))


def _check_end(session: Session, walk: _Walk, head: Head, head_mac_key: bytes) -> None:
    """After the walk: content gone without a "destroyed" record, then the head itself, then
    records that no head covers (planted past the end)."""
    if walk.missing:
        record_id, seq = min(walk.missing.items(), key=lambda item: item[1])
        raise _Bad(seq, record_id, "its conversation's content is gone with no destroyed record")
    last = walk.count
    if head.seq > last:
        raise _Bad(last + 1, None, f"the chain ends at record {last} but its head is at {head.seq}")
    if head.entry_hash != walk.prev_hash:
        raise _Bad(last or None, _record_id_at(session, last), "the head's hash is not the last's")
    if last:
        try:
            ARCHIVE.verify_head_mac(head_mac_key, head)
        except crypto.IntegrityCheckFailed:
            raise _Bad(
                last, _record_id_at(session, last), "the head's MAC was not made with the key"
            ) from None
    # Read the highest record before the current head: a record committed in between comes
    # with its head update, so only a record no head ever covered is past the end.
    highest = session.scalar(select(func.max(ArchiveRecord.seq))) or 0
    now = ARCHIVE.read_head(session)
    if now is not None and highest > now.seq:
        seq = now.seq + 1
        raise _Bad(seq, _record_id_at(session, seq), f"a record past the head (at {now.seq})")
