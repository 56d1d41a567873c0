"""The archive gate: the archive key opens sealed records only (SECURITY-MODEL key hierarchy 10).

Every conversation's DEK is wrapped (HPKE) to the compliance archive role key from its first
message on, because sealing must work unattended (retention's seal mode holds no DEK). Left
bare, that wrap let a compliance officer's password plus a database copy read every *live*
conversation, with no retrieval, no second officer and no audit entry. So while a
conversation is live its archive wrap is sealed again, AES-256-GCM, under the **gate key**:
HKDF-SHA256 of ``archive-gate.key`` from ``MEDCHAT_KEY_DIR`` (never in the database), with
the conversation, the holder and the archive key id as associated data. Sealing the
conversation (member deletion, account deletion, retention's seal mode: all through
``DeletionService.seal``) lifts the gate in the same transaction, leaving the plain HPKE wrap
that only an archive key holder's four-eyes retrieval opens. Nothing else ever lifts it.

What each piece gives: officer's password + database copy: the archive key, which opens no
gated wrap; database + key directory: the gate lifted, an HPKE wrap to the archive key that
nothing of the server's opens. Only the three together read a live conversation.

This module is the one place that decides how a gated wrap is told from a plain one: its row
holds ``holder = 'archive_gated'`` (``GATED``), and its bytes are the gate's AEAD envelope
around the archive wrap (whose own HPKE info still says ``archive``). Code that looks for
``holder = 'archive'`` (a retrieval) never finds a gated wrap; code that must see both (a
rotation, ``keys status``) asks ``stored_holders``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from access_control import crypto
from medchat.errors import KeyIntegrityFailure
from medchat.models import Conversation, ConversationKeyWrap, ConversationStatus, Holder

#: The ``holder`` of a gated archive wrap (a live conversation's).
GATED: Final = "archive_gated"
_KEY_INFO: Final = b"medchat/archive-gate/v1"
_AAD_LABEL: Final = "medchat/archive-gate/v1"
log = logging.getLogger("medchat.archive.gate")


def stored_holders(holder: str) -> tuple[str, ...]:
    """The ``holder`` values under which ``holder``'s wraps are stored (gated or not)."""
    return (Holder.ARCHIVE, GATED) if holder == Holder.ARCHIVE else (holder,)


def must_gate(holder: str, status: str, *, gated_now: bool = False) -> bool:
    """Whether an archive wrap is stored gated: always while its conversation is live, and a
    gated one stays gated whatever the status says (only ``lift``, inside a sealing, removes
    a gate: a status set to ``sealed`` through SQL must not make a rotation do it)."""
    if holder not in (Holder.ARCHIVE, GATED):
        return False
    return gated_now or status != ConversationStatus.SEALED


def wrapped_for(stored_holder: str) -> str:
    """The holder a stored wrap's HPKE info names: a gated wrap is an archive wrap inside."""
    return Holder.ARCHIVE if stored_holder == GATED else stored_holder


class ArchiveGate(crypto.SecretHandle):
    """Closes and opens the gate around archive wraps with the key derived for it."""

    __slots__ = ("_key", "key_id")

    def __init__(self, server_key: bytes) -> None:
        derived = crypto.hkdf_sha256(server_key, salt=b"", info=_KEY_INFO, length=crypto.KEY_SIZE)
        self._key = crypto.AeadKey(derived)
        #: The key id every gated wrap names (``crypto.envelope_key_id``): not secret.
        self.key_id = crypto.key_id(derived)

    def __repr__(self) -> str:
        return "ArchiveGate()"

    @staticmethod
    def _aad(conversation_id: uuid.UUID, recipient_key_id: bytes) -> bytes:
        return crypto.associated_data(_AAD_LABEL, conversation_id, Holder.ARCHIVE, recipient_key_id)

    def close(self, wrap: bytes, *, conversation_id: uuid.UUID, recipient_key_id: bytes) -> bytes:
        """The gated form of this conversation's archive wrap sealed to ``recipient_key_id``."""
        return self._key.seal(wrap, self._aad(conversation_id, recipient_key_id))

    def open(self, gated: bytes, *, conversation_id: uuid.UUID, recipient_key_id: bytes) -> bytes:
        """The archive wrap inside; ``KeyIntegrityFailure`` when the gate was altered or moved."""
        try:
            return self._key.open(gated, self._aad(conversation_id, recipient_key_id))
        except crypto.DecryptionFailed as exc:
            raise KeyIntegrityFailure("This conversation's archive wrap was altered.") from exc


def lifted(session: Session, conversation: Conversation) -> bool:
    """Whether the conversation is sealed and none of its archive wraps is gated any more
    (what a retrieval requires before it opens anything)."""
    if conversation.status != ConversationStatus.SEALED:
        return False
    gated = session.scalar(
        select(func.count())
        .select_from(ConversationKeyWrap)
        .where(
            ConversationKeyWrap.conversation_id == conversation.id,
            ConversationKeyWrap.holder == GATED,
        )
    )
    return not gated


@dataclass(frozen=True)
class Lifted:
    """What ``lift`` did to one conversation's gated wraps."""

    lifted: int
    #: Gated wraps that did not open (altered in the database): left in place as evidence.
    refused: int


def lift(session: Session, gate: ArchiveGate, conversation_id: uuid.UUID, now: datetime) -> Lifted:
    """Replace the conversation's gated archive wraps (of every key epoch) by the plain ones
    inside, each in its epoch (sealing).

    The caller holds the conversation's row lock and is sealing it in this transaction. Each
    gated row is deleted (``RETURNING``) and its plain wrap inserted as a new row, repeating
    until a pass finds none: an archive rotation racing the sealing deletes a gated row and
    inserts its successor, which a statement that waited for it does not see (PostgreSQL), and
    deleting rather than updating means the rotation, which replaces only rows it deleted
    itself, never re-gates a wrap this lifted. A gated wrap that does not open is left as it
    is (nothing reads it: a retrieval refuses a sealed conversation that still has one).
    """
    wraps = ConversationKeyWrap
    refused: set[uuid.UUID] = set()
    lifted = 0
    while True:
        rows = session.execute(
            select(wraps.id, wraps.epoch, wraps.recipient_key_id, wraps.wrap).where(
                wraps.conversation_id == conversation_id,
                wraps.holder == GATED,
                wraps.id.notin_(refused),
            )
        ).all()
        if not rows:
            return Lifted(lifted, len(refused))
        plain: dict[uuid.UUID, dict[str, object]] = {}
        for row in rows:
            try:
                opened = gate.open(
                    row.wrap, conversation_id=conversation_id, recipient_key_id=row.recipient_key_id
                )
            except KeyIntegrityFailure:
                log.error("the archive gate of conversation %s does not open", conversation_id)
                refused.add(row.id)
                continue
            plain[row.id] = {
                "id": uuid.uuid4(),
                "conversation_id": conversation_id,
                "epoch": row.epoch,
                "holder": Holder.ARCHIVE,
                "recipient_key_id": row.recipient_key_id,
                "wrap": opened,
                "created_at": now,
            }
        if not plain:
            continue
        deleted = set(
            session.scalars(
                delete(wraps)
                .where(wraps.id.in_(list(plain)))
                .returning(wraps.id)
                .execution_options(synchronize_session=False)
            )
        )
        rows_to_insert = [values for row_id, values in plain.items() if row_id in deleted]
        if rows_to_insert:
            session.execute(insert(wraps), rows_to_insert)
        lifted += len(rows_to_insert)
