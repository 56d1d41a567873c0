"""Audit anchors: the chain head, signed and kept where the database writer cannot rewrite it.

Threat (SECURITY-MODEL "Audit"): the database owner role has DELETE on ``audit_entries``. It
deletes the chain's tail and puts back a ``chain_heads`` row it saved earlier; that row's MAC
is genuine (the audit key made it when it was current), so ``audit.verify`` walks a whole,
shorter chain and passes. Nothing inside the database can tell; a record outside it can.

``medchat audit anchor`` signs the heads that ``audit.checked_heads`` vouches for (each
chain's name, position and entry hash, and the time of the injected clock) in one document with the
Ed25519 seed
``audit-anchor.key`` in ``MEDCHAT_KEY_DIR`` and prints the signed document as one JSON line
(for the journal) and appends it to a file another user owns (``deploy/systemd/
medchat-audit-anchor.*``). ``medchat audit verify --anchor FILE`` then fails when an anchor's
signature does not verify, when the chain is shorter than the latest anchored sequence, or
when the entry at that sequence does not carry the anchored hash, for every chain the anchor
names. Checking the latest anchor is enough once every signature verifies: each entry hash
covers the whole chain before it, and a chain the anchor does not name was empty when signed.

Format 2 (``medchat/audit-anchor/v2``) lists every head; format 1 (one chain, written before
chains existed) is still read and checked as an anchor of the chain ``audit``.

The verifying key is derived from ``audit-anchor.key``, never read from the document (which
names it so a reader sees which key signed): an anchor signed with another key, or edited
after signing, is refused. There is no configuration pin, unlike the archive-signing key:
verifying the chain needs ``MEDCHAT_KEY_DIR`` anyway (the audit MAC key), and whoever can
replace files there can recompute the whole chain with that key, so a pin beside it would
guard nothing more. ``medchat audit anchor-public-key`` prints the public key for anyone who
checks anchors elsewhere (a log pipeline, an auditor): ``verify_signature`` with it needs no
secret. The signed message is domain-separated (``medchat/audit-anchor/v1``, encoded like
every signed message: ``crypto.associated_data``), so it can never pass for an archive
record's signature or the other way round, nor a v1 anchor for a v2 one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from access_control import crypto, signatures
from medchat.audit.verification import CHAINS, VerifyResult, checked_heads
from medchat.clock import iso_z
from medchat.models import AuditEntry

FORMAT = "medchat/audit-anchor/v2"
FORMAT_V1 = "medchat/audit-anchor/v1"
_FIELDS = {"format", "heads", "anchored_at", "public_key", "signature"}
_FIELDS_V1 = {"format", "chain", "seq", "entry_hash", "anchored_at", "public_key", "signature"}


class AnchorRejected(Exception):
    """An anchor that cannot be trusted (malformed, or its signature does not verify), or a
    chain that does not hold what an anchor recorded. The message says which and where."""


@dataclass(frozen=True)
class Head:
    """One chain's head as anchored: its name, position (``seq``) and entry hash."""

    chain: str
    seq: int
    entry_hash: bytes


@dataclass(frozen=True)
class Anchor:
    """Signed chain heads. ``anchored_at`` is kept as written: the signature covers it."""

    heads: tuple[Head, ...]
    anchored_at: str
    public_key: bytes
    signature: bytes
    format: str = FORMAT

    @property
    def seq(self) -> int:
        """The entries the anchored heads account for (the sum of their positions)."""
        return sum(head.seq for head in self.heads)

    def _message(self) -> bytes:
        if self.format == FORMAT_V1:
            (head,) = self.heads
            return crypto.associated_data(
                FORMAT_V1, head.chain, head.seq, head.entry_hash, self.anchored_at
            )
        parts: list[crypto.Part] = [FORMAT, self.anchored_at, len(self.heads)]
        for head in self.heads:
            parts += [head.chain, head.seq, head.entry_hash]
        return crypto.associated_data(*parts)

    def as_document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "heads": [
                {"chain": h.chain, "seq": h.seq, "entry_hash": h.entry_hash.hex()}
                for h in self.heads
            ],
            "anchored_at": self.anchored_at,
            "public_key": self.public_key.hex(),
            "signature": self.signature.hex(),
        }

    def as_line(self) -> str:
        """The document as one JSON line: what the journal and the anchor file hold."""
        return json.dumps(self.as_document(), sort_keys=True, separators=(",", ":"))


class AnchorSigner:
    """The opened ``audit-anchor.key``: signs heads and knows its own public key."""

    def __init__(self, seed: bytes) -> None:
        try:
            self._key = signatures.load_signing_key(seed)
        except crypto.DecryptionFailed as exc:
            raise AnchorRejected("audit-anchor.key does not hold a 32-byte Ed25519 seed") from exc
        self.public_key = self._key.public_key_bytes

    def __repr__(self) -> str:
        return f"AnchorSigner(fingerprint={self.fingerprint[:16]})"

    @property
    def fingerprint(self) -> str:
        return signatures.signing_key_fingerprint(self.public_key)

    def sign_heads(self, session: Session, audit_key: bytes, now: datetime) -> Anchor:
        """Sign the current heads, once ``audit.checked_heads`` vouches for each.

        Raises ``AnchorRejected`` when a head or its entry fails its check: a head the audit
        key did not make is never signed.
        """
        try:
            heads = tuple(Head(*head) for head in checked_heads(session, audit_key))
        except crypto.IntegrityCheckFailed as exc:
            raise AnchorRejected(f"not anchoring: {exc}") from exc
        unsigned = Anchor(heads, iso_z(now), self.public_key, b"")
        signature = signatures.sign(self._key, unsigned._message())
        return Anchor(heads, unsigned.anchored_at, self.public_key, signature)

    def verify(self, anchor: Anchor) -> None:
        """Raise ``AnchorRejected`` unless this key signed exactly this anchor."""
        try:
            signatures.verify_signature(self.public_key, anchor.signature, anchor._message())
        except crypto.IntegrityCheckFailed:
            raise AnchorRejected(
                "its signature does not verify with audit-anchor.key (forged or edited)"
            ) from None


def _position(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise AnchorRejected("seq is not a sequence number")
    return value


def _head(document: object) -> Head:
    if not isinstance(document, dict) or set(document) != {"chain", "seq", "entry_hash"}:
        raise AnchorRejected("a head is not {chain, seq, entry_hash}")
    return Head(
        str(document["chain"]), _position(document["seq"]), bytes.fromhex(document["entry_hash"])
    )


def parse_anchor(document: object) -> Anchor:
    """An ``Anchor`` from a decoded JSON document; ``AnchorRejected`` for anything else."""
    if not isinstance(document, dict) or "format" not in document:
        raise AnchorRejected("not an audit anchor document")
    version = document["format"]
    if version not in (FORMAT, FORMAT_V1):
        raise AnchorRejected(f"unknown format {str(version)[:40]!r}")
    if set(document) != (_FIELDS if version == FORMAT else _FIELDS_V1):
        raise AnchorRejected("not an audit anchor document")
    try:
        if version == FORMAT_V1:
            heads: tuple[Head, ...] = (
                _head({k: document[k] for k in ("chain", "seq", "entry_hash")}),
            )
        else:
            if not isinstance(document["heads"], list) or not document["heads"]:
                raise AnchorRejected("an anchor names at least one head")
            heads = tuple(_head(item) for item in document["heads"])
            if len({head.chain for head in heads}) != len(heads):
                raise AnchorRejected("a chain is named twice")
        return Anchor(
            heads=heads,
            anchored_at=str(document["anchored_at"]),
            public_key=bytes.fromhex(document["public_key"]),
            signature=bytes.fromhex(document["signature"]),
            format=version,
        )
    except (TypeError, ValueError):
        raise AnchorRejected("a hash, key or signature is not hex") from None


def read_anchors(text: str) -> list[Anchor]:
    """Every anchor of a file of JSON lines (blank lines skipped); ``AnchorRejected`` names
    the first line that is not one."""
    anchors = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            anchors.append(parse_anchor(json.loads(line)))
        except (ValueError, AnchorRejected) as exc:
            reason = exc if isinstance(exc, AnchorRejected) else "not JSON"
            raise AnchorRejected(f"line {number}: {reason}") from None
    return anchors


def latest_verified(anchors: list[Anchor], signer: AnchorSigner) -> Anchor | None:
    """The latest anchor (the one accounting for the most entries) once every anchor's
    signature verifies (one forged or edited line rejects the file: it was written where only
    the anchor job may)."""
    for number, anchor in enumerate(anchors, start=1):
        try:
            signer.verify(anchor)
        except AnchorRejected as exc:
            raise AnchorRejected(f"anchor {number}: {exc}") from None
        if any(head.chain not in CHAINS for head in anchor.heads):
            raise AnchorRejected(f"anchor {number}: names a chain that is not an audit chain")
    return max(anchors, key=lambda a: a.seq, default=None)


def check_chain(session: Session, anchor: Anchor, lengths: dict[str, int]) -> None:
    """Raise ``AnchorRejected`` unless chains of ``lengths`` (each head's position, checked by
    the caller) hold every anchored entry with its anchored hash."""
    for head in anchor.heads:
        length = lengths.get(head.chain, 0)
        if head.seq > length:
            raise AnchorRejected(
                f"chain {head.chain} ends at entry {length} but the anchor of "
                f"{anchor.anchored_at} records entry {head.seq}: entries were removed"
            )
        if head.seq == 0:
            continue
        stored = session.scalar(
            select(AuditEntry.entry_hash).where(
                AuditEntry.chain == head.chain, AuditEntry.position == head.seq
            )
        )
        if stored is None or not crypto.constant_time_equal(stored, head.entry_hash):
            raise AnchorRejected(
                f"chain {head.chain} entry {head.seq} does not have the hash anchored at "
                f"{anchor.anchored_at}: the chain was rewritten"
            )


def verify_against(session: Session, result: VerifyResult, anchor: Anchor) -> None:
    """After a walk of the chains that passed (``audit.verify``), fail ``result`` when a chain
    lost or rewrote an anchored entry; ``first_bad`` is the first global seq concerned."""
    try:
        check_chain(session, anchor, result.heads)
    except AnchorRejected as exc:
        result.ok = False
        result.first_bad = _first_lost(session, anchor, result.heads)
        result.reason = str(exc)


def _first_lost(session: Session, anchor: Anchor, lengths: dict[str, int]) -> int:
    """The first global seq concerned: one past the newest entry left in a chain that lost
    anchored entries, or the rewritten anchored entry itself."""
    concerned = []
    for head in anchor.heads:
        length = lengths.get(head.chain, 0)
        at = min(head.seq, length)
        row = session.execute(
            select(AuditEntry.seq, AuditEntry.entry_hash).where(
                AuditEntry.chain == head.chain, AuditEntry.position == at
            )
        ).first()
        if head.seq > length:
            concerned.append((row.seq if row else 0) + 1)
        elif row is not None and head.seq and row.entry_hash != head.entry_hash:
            concerned.append(row.seq)
    return min(concerned, default=1)


def summary(anchor: Anchor) -> dict[str, Any]:
    """What ``audit verify --anchor`` reports of the anchor it checked."""
    return {
        "seq": anchor.seq,
        "heads": {head.chain: head.seq for head in anchor.heads},
        "anchored_at": anchor.anchored_at,
    }
