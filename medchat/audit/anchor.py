"""Audit anchors: the chain head, signed and kept where the database writer cannot rewrite it.

Threat (SECURITY-MODEL "Audit"): the database owner role has DELETE on ``audit_entries``. It
deletes the chain's tail and puts back a ``chain_heads`` row it saved earlier; that row's MAC
is genuine (the audit key made it when it was current), so ``audit.verify`` walks a whole,
shorter chain and passes. Nothing inside the database can tell; a record outside it can.

``medchat audit anchor`` signs the head that ``audit.checked_head`` vouches for (chain name,
sequence, entry hash, the time of the injected clock) with the Ed25519 seed
``audit-anchor.key`` in ``MEDCHAT_KEY_DIR`` and prints the signed document as one JSON line
(for the journal) and appends it to a file another user owns (``deploy/systemd/
medchat-audit-anchor.*``). ``medchat audit verify --anchor FILE`` then fails when an anchor's
signature does not verify, when the chain is shorter than the latest anchored sequence, or
when the entry at that sequence does not carry the anchored hash. Checking the latest anchor
is enough once every signature verifies: each entry hash covers the whole chain before it.

The verifying key is derived from ``audit-anchor.key``, never read from the document (which
names it so a reader sees which key signed): an anchor signed with another key, or edited
after signing, is refused. There is no configuration pin, unlike the archive-signing key:
verifying the chain needs ``MEDCHAT_KEY_DIR`` anyway (the audit MAC key), and whoever can
replace files there can recompute the whole chain with that key, so a pin beside it would
guard nothing more. ``medchat audit anchor-public-key`` prints the public key for anyone who
checks anchors elsewhere (a log pipeline, an auditor): ``verify_signature`` with it needs no
secret. The signed message is domain-separated (``medchat/audit-anchor/v1``, encoded like
every signed message: ``crypto.associated_data``), so it can never pass for an archive
record's signature or the other way round.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from access_control import crypto, signatures
from medchat.audit.chain import AUDIT_CHAIN, VerifyResult, checked_head
from medchat.clock import iso_z
from medchat.models import AuditEntry

FORMAT = "medchat/audit-anchor/v1"
_FIELDS = {"format", "chain", "seq", "entry_hash", "anchored_at", "public_key", "signature"}


class AnchorRejected(Exception):
    """An anchor that cannot be trusted (malformed, or its signature does not verify), or a
    chain that does not hold what an anchor recorded. The message says which and where."""


@dataclass(frozen=True)
class Anchor:
    """One signed chain head. ``anchored_at`` is kept as written: the signature covers it."""

    chain: str
    seq: int
    entry_hash: bytes
    anchored_at: str
    public_key: bytes
    signature: bytes

    def _message(self) -> bytes:
        return crypto.associated_data(
            FORMAT, self.chain, self.seq, self.entry_hash, self.anchored_at
        )

    def as_document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "chain": self.chain,
            "seq": self.seq,
            "entry_hash": self.entry_hash.hex(),
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

    def sign_head(self, session: Session, audit_key: bytes, now: datetime) -> Anchor:
        """Sign the current head, once ``audit.checked_head`` vouches for it.

        Raises ``AnchorRejected`` when the head or its entry fails its check: a head the audit
        key did not make is never signed.
        """
        try:
            seq, entry_hash = checked_head(session, audit_key)
        except crypto.IntegrityCheckFailed as exc:
            raise AnchorRejected(f"not anchoring: {exc}") from exc
        unsigned = Anchor(AUDIT_CHAIN, seq, entry_hash, iso_z(now), self.public_key, b"")
        signature = signatures.sign(self._key, unsigned._message())
        return Anchor(
            AUDIT_CHAIN, seq, entry_hash, unsigned.anchored_at, self.public_key, signature
        )

    def verify(self, anchor: Anchor) -> None:
        """Raise ``AnchorRejected`` unless this key signed exactly this anchor."""
        try:
            signatures.verify_signature(self.public_key, anchor.signature, anchor._message())
        except crypto.IntegrityCheckFailed:
            raise AnchorRejected(
                "its signature does not verify with audit-anchor.key (forged or edited)"
            ) from None


def parse_anchor(document: object) -> Anchor:
    """An ``Anchor`` from a decoded JSON document; ``AnchorRejected`` for anything else."""
    if not isinstance(document, dict) or set(document) != _FIELDS:
        raise AnchorRejected("not an audit anchor document")
    if document["format"] != FORMAT:
        raise AnchorRejected(f"unknown format {str(document['format'])[:40]!r}")
    seq = document["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise AnchorRejected("seq is not a sequence number")
    try:
        return Anchor(
            chain=str(document["chain"]),
            seq=seq,
            entry_hash=bytes.fromhex(document["entry_hash"]),
            anchored_at=str(document["anchored_at"]),
            public_key=bytes.fromhex(document["public_key"]),
            signature=bytes.fromhex(document["signature"]),
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
    """The anchor with the highest sequence once every anchor's signature verifies (one
    forged or edited line rejects the file: it was written where only the anchor job may)."""
    for number, anchor in enumerate(anchors, start=1):
        try:
            signer.verify(anchor)
        except AnchorRejected as exc:
            raise AnchorRejected(f"anchor {number}: {exc}") from None
        if anchor.chain != AUDIT_CHAIN:
            raise AnchorRejected(f"anchor {number}: not an anchor of the {AUDIT_CHAIN!r} chain")
    return max(anchors, key=lambda a: a.seq, default=None)


def check_chain(session: Session, anchor: Anchor, length: int) -> None:
    """Raise ``AnchorRejected`` unless a chain of ``length`` entries (the head's sequence,
    checked by the caller) holds the anchored entry with the anchored hash."""
    if anchor.seq > length:
        raise AnchorRejected(
            f"the chain ends at entry {length} but the anchor of {anchor.anchored_at} records "
            f"entry {anchor.seq}: entries were removed"
        )
    if anchor.seq == 0:
        return
    stored = session.scalar(select(AuditEntry.entry_hash).where(AuditEntry.seq == anchor.seq))
    if stored is None or not crypto.constant_time_equal(stored, anchor.entry_hash):
        raise AnchorRejected(
            f"entry {anchor.seq} does not have the hash anchored at {anchor.anchored_at}: "
            "the chain was rewritten"
        )


def verify_against(session: Session, result: VerifyResult, anchor: Anchor) -> None:
    """After a walk of the chain that passed (``audit.verify``), fail ``result`` when the
    chain lost or rewrote the anchored entry; the first entry concerned is ``first_bad``."""
    try:
        check_chain(session, anchor, result.head_seq)
    except AnchorRejected as exc:
        result.ok = False
        result.first_bad = min(anchor.seq, result.head_seq + 1)
        result.reason = str(exc)


def summary(anchor: Anchor) -> dict[str, Any]:
    """What ``audit verify --anchor`` reports of the anchor it checked."""
    return {
        "seq": anchor.seq,
        "entry_hash": anchor.entry_hash.hex(),
        "anchored_at": anchor.anchored_at,
    }
