"""Re-sealing DEK wraps from an old role key to a new one, in batches (rotation steps 4-5).

SECURITY-MODEL key hierarchy 8: role keys rotate without re-encrypting content. Each batch is
one transaction: the next ``batch_size`` wraps naming the old key, in conversation-id order
after the rotation's cursor, are opened with the old private key (held by the person running
the rotation, never by the server), checked against the conversation's key-set tag and
commitment (a swapped wrap is refused, never re-sealed), sealed to the new public key and
swapped for their old row; the cursor and count commit with them, so a run stopped anywhere
resumes after the last committed batch and re-seals nothing twice.

A wrap naming the new key may be there already (a batch that committed before its cursor did,
a sealing racing the rotation, or a row a database writer planted). It is trusted only once it
opens with the new private key to the DEK the conversation's commitment names: then the old
wrap alone goes. One that does not open is deleted and replaced by a good one in the same
transaction as the old wrap's deletion, so the last wrap that opens a conversation is never
deleted before a successor proven (or just sealed) to open it is in place. For a sealed record,
whose archive wrap is the only way back to its content, a loss would be permanent.

Archive wraps come in two forms (``medchat.archive.gate``): a live conversation's is gated by
the server's gate key, a sealed one's is plain. A gated wrap is opened from its gate (server
key), then with the old archive key, sealed to the new one and gated again; a plain one is
re-sealed plain. A rotation never lifts a gate: only a sealing does.

Every key epoch of a conversation has its own wraps (``medchat.keys.epochs``): each is re-sealed
like any other, checked against its own epoch's commitment (from the epoch's tagged row; epoch
1's is the conversation row's), and its successor keeps its epoch.

Cost: one HPKE open and one seal per conversation (~0.3 ms together) dominate; rows are read
with one joined query, inserted and deleted in bulk, and the new public key is parsed once.
Sends and reads go on meanwhile: messages never touch wraps, and readers find the old or the
new wrap (sessions opened before the rotation reach the new key through their grants).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, insert, select
from sqlalchemy.orm import Session

from access_control import hybrid_kem
from medchat import audit
from medchat.archive.gate import GATED, must_gate, stored_holders
from medchat.errors import KeyIntegrityFailure
from medchat.keys.conversation_keys import ConversationKeys
from medchat.keys.custody import KeyCustody
from medchat.keys.epochs import epoch_commitment
from medchat.keys.rotation_state import Progress, RotationBlocked, locked_rotation, remaining_wraps
from medchat.keys.wrap_binding import seal_wrap
from medchat.models import (
    Conversation,
    ConversationKeyEpoch,
    ConversationKeyWrap,
    RoleKey,
    RoleKeyRotation,
)
from medchat.storage.row_integrity import is_tampered, skip_tampered

if TYPE_CHECKING:  # the service context is passed in; importing it would run back up a layer
    from medchat.services.context import ServiceContext


class WrapResealer:
    """Moves one holder's wraps from ``old`` to ``new``; each batch commits on its own."""

    def __init__(
        self,
        runtime: ServiceContext,
        *,
        rotation_id: uuid.UUID,
        holder: str,
        old: RoleKey,
        old_private: hybrid_kem.PrivateKeyHandle,
        new: RoleKey,
        new_private: hybrid_kem.PrivateKeyHandle,
        batch_size: int,
        audit_context: audit.AuditContext,
        progress: Progress | None = None,
    ) -> None:
        if (
            old_private.public_key_bytes != old.public_key
            or new_private.public_key_bytes != new.public_key
        ):
            raise KeyIntegrityFailure("The held role key does not match the stored role key.")
        self.runtime = runtime
        self.rotation_id = rotation_id
        self.holder = holder
        #: The stored ``holder`` values of this holder's wraps (an archive wrap may be gated).
        self.holders = stored_holders(holder)
        self.gate = runtime.archive_gate
        self.old = old
        self.old_private = old_private
        self.new = new
        self.new_private = new_private
        self.batch_size = batch_size
        self.audit_context = audit_context
        self.progress = progress
        # Parsed and validated once for every seal of the run.
        self.recipient = hybrid_kem.load_public_key(new.public_key)
        self.failed: set[uuid.UUID] = set()

    @contextmanager
    def _step(self) -> Iterator[tuple[Session, KeyCustody, RoleKeyRotation]]:
        with self.runtime.database.transaction() as session:
            audit.set_context(session, self.audit_context)
            rotation = locked_rotation(session, self.rotation_id, self.holder)
            yield session, self.runtime.custody(session), rotation

    def run(self, max_batches: int | None = None) -> bool:
        """Re-seal until no wrap names the old key; False when stopped by ``max_batches``.

        A pass runs from the stored cursor to the end. A wrap committed behind the cursor
        meanwhile (none should be: the activation waits for sealers) is found by a sweep, a
        pass from the start, repeated until nothing is left. Raises ``RotationBlocked`` when
        only wraps that do not open are left, or when a whole pass moved none of the wraps
        still naming the old key (the next would not either: a run never spins): the old key
        then stays.
        """
        with self._step() as (session, _, rotation):
            done = rotation.resealed
            total = done + remaining_wraps(session, self.holder, self.old.key_id)
        batches = 0
        after_last_pass: int | None = None
        while max_batches is None or batches < max_batches:
            with self._step() as (session, custody, rotation):
                resealed, cursor = self._batch(session, custody, rotation.cursor)
                if cursor is None:
                    remaining = remaining_wraps(session, self.holder, self.old.key_id)
                    if remaining == 0:
                        return True
                    if self.failed and not remaining_wraps(
                        session, self.holder, self.old.key_id, excluding=self.failed
                    ):
                        raise RotationBlocked(
                            f"{remaining} {self.holder} wraps do not open with the old key "
                            "(see the role_key.rewrap_batch audit entries); the old key stays"
                        )
                    if remaining == after_last_pass:
                        raise RotationBlocked(
                            f"{remaining} {self.holder} wraps still name the old key and a "
                            "whole pass moved none of them; the old key stays"
                        )
                    after_last_pass = remaining
                    total = done + remaining
                rotation.cursor = cursor
                rotation.resealed += resealed
            batches += 1
            done += resealed
            if self.progress is not None:
                self.progress(done, max(total, done))
        return False

    def _batch(
        self, session: Session, custody: KeyCustody, cursor: uuid.UUID | None
    ) -> tuple[int, uuid.UUID | None]:
        """Re-seal the batch after ``cursor``: (wraps re-sealed, next cursor or None at the end).

        A batch is the next ``batch_size`` conversations by id (a walk of the primary key,
        whatever the table's size), then their wraps that name the old key. Asking for "the
        next wraps naming the old key" instead lets the planner scan every remaining wrap
        for each batch: quadratic over a large table.
        """
        wrap = ConversationKeyWrap
        span = select(Conversation.id).order_by(Conversation.id).limit(self.batch_size)
        if cursor is not None:
            span = span.where(Conversation.id > cursor)
        ids = list(session.scalars(span))
        if not ids:
            return 0, None
        # The same conversations as a key range (cheaper to send and plan than 1,000 ids).
        in_span = wrap.conversation_id <= ids[-1]
        if cursor is not None:
            in_span = and_(wrap.conversation_id > cursor, in_span)
        epochs = ConversationKeyEpoch
        rows = session.execute(
            skip_tampered(
                select(
                    wrap.id,
                    wrap.conversation_id,
                    wrap.epoch,
                    wrap.holder,
                    wrap.wrap,
                    Conversation.member_id,
                    Conversation.status,
                    Conversation.key_commitment,
                    Conversation.key_tag,
                    Conversation.content_version,
                    epochs,
                )
                .join(Conversation, Conversation.id == wrap.conversation_id)
                .outerjoin(
                    epochs,
                    and_(
                        epochs.conversation_id == wrap.conversation_id, epochs.epoch == wrap.epoch
                    ),
                )
                .where(
                    in_span,
                    wrap.holder.in_(self.holders),
                    wrap.recipient_key_id == self.old.key_id,
                )
            )
        ).all()
        if not rows:  # re-sealed already, created after the activation, or shredded
            return 0, ids[-1]
        present: dict[tuple[uuid.UUID, int], list[Any]] = {}
        for found in session.execute(
            select(wrap.id, wrap.conversation_id, wrap.epoch, wrap.holder, wrap.wrap).where(
                wrap.conversation_id.in_([row.conversation_id for row in rows]),
                wrap.holder.in_(self.holders),
                wrap.recipient_key_id == self.new.key_id,
            )
        ):
            present.setdefault((found.conversation_id, found.epoch), []).append(found)
        keys = ConversationKeys(session, custody, self.runtime.keys.integrity, self.gate)
        replacements: dict[uuid.UUID, dict[str, Any] | None] = {}
        unproven: dict[uuid.UUID, list[uuid.UUID]] = {}
        failed = []
        for row in rows:
            try:
                keys.verify_key_set(
                    row.conversation_id,
                    row.member_id,
                    row.key_commitment,
                    row.key_tag,
                    row.content_version,
                )
                commitment = self._commitment(row)
            except KeyIntegrityFailure:
                failed.append(row.conversation_id)
                continue
            there = present.get((row.conversation_id, row.epoch), [])
            opening = {each.id for each in there if self._opens(keys, each, row, commitment)}
            unproven[row.id] = [each.id for each in there if each.id not in opening]
            if any(e.id in opening and e.holder == self._stored_holder(row) for e in there):
                replacements[row.id] = None  # its successor is there and opens: only it stays
                continue
            try:
                dek = self._open_old(keys, row, commitment)
            except KeyIntegrityFailure:
                failed.append(row.conversation_id)
                continue
            replacements[row.id] = self._replacement(row, dek, custody.now)
        inserted = self._swap(session, replacements, unproven)
        self.failed.update(failed)
        replaced = sorted(
            str(row.conversation_id)
            for row in rows
            if unproven.get(row.id) and row.id in replacements
        )
        audit.record(
            session,
            "role_key.rewrap_batch",
            target_type="role_key",
            target_id=self.new.id,
            outcome="partial" if failed else "success",
            details={
                "role": self.holder,
                "resealed": inserted,
                "failed": len(failed),
                "failed_conversations": [str(i) for i in failed],
                # New-key wraps found in place that did not open: deleted and sealed anew.
                "unproven_replaced": replaced,
            },
        )
        return inserted, ids[-1]

    def _stored_holder(self, row: Any) -> str:
        """The ``holder`` the old wrap's successor is stored under (gated stays gated)."""
        if must_gate(row.holder, row.status, gated_now=row.holder == GATED):
            return GATED
        return self.holder

    @staticmethod
    def _commitment(row: Any) -> bytes:
        """The commitment of the wrap's epoch (its row's tag verified on load, or refused)."""
        epoch_row = row.ConversationKeyEpoch
        if epoch_row is not None and is_tampered(epoch_row):
            raise KeyIntegrityFailure("A key epoch's record failed its tag.")
        return epoch_commitment(row.conversation_id, row.key_commitment, row.epoch, epoch_row)

    def _open_old(self, keys: ConversationKeys, row: Any, commitment: bytes) -> bytes:
        """The DEK from the old-key wrap (its gate opened first); ``KeyIntegrityFailure`` if
        it does not open to the committed key."""
        stored = row.wrap
        if row.holder == GATED:
            stored = self.gate.open(
                stored, conversation_id=row.conversation_id, recipient_key_id=self.old.key_id
            )
        return keys.open_wrap(
            stored,
            self.old_private,
            holder=self.holder,
            recipient_id=self.old.id,
            conversation_id=row.conversation_id,
            commitment=commitment,
        )

    def _opens(self, keys: ConversationKeys, there: Any, row: Any, commitment: bytes) -> bool:
        """Whether a new-key wrap found in place opens, with the new private key, to the DEK
        the conversation's (verified) commitment names."""
        try:
            stored = there.wrap
            if there.holder == GATED:
                stored = self.gate.open(
                    stored, conversation_id=row.conversation_id, recipient_key_id=self.new.key_id
                )
            keys.open_wrap(
                stored,
                self.new_private,
                holder=self.holder,
                recipient_id=self.new.id,
                conversation_id=row.conversation_id,
                commitment=commitment,
            )
        except KeyIntegrityFailure:
            return False
        return True

    def _replacement(self, row: Any, dek: bytes, now: datetime) -> dict[str, Any]:
        """The new wrap's row: sealed to the new key, gated again if it was (or should be)."""
        holder = self._stored_holder(row)
        wrap = seal_wrap(
            self.recipient,
            dek,
            holder=self.holder,
            recipient_id=self.new.id,
            conversation_id=row.conversation_id,
        )
        if holder == GATED:
            wrap = self.gate.close(
                wrap, conversation_id=row.conversation_id, recipient_key_id=self.new.key_id
            )
        return {
            "id": uuid.uuid4(),
            "conversation_id": row.conversation_id,
            "epoch": row.epoch,
            "holder": holder,
            "recipient_key_id": self.new.key_id,
            "wrap": wrap,
            "created_at": now,
        }

    @staticmethod
    def _swap(
        session: Session,
        replacements: dict[uuid.UUID, dict[str, Any] | None],
        unproven: dict[uuid.UUID, list[uuid.UUID]],
    ) -> int:
        """Delete the old wraps, and for the rows this transaction deleted, the new-key wraps
        that did not open; insert the replacements. One transaction: the old wrap goes only
        with its successor in place.

        Deleting first (``RETURNING`` the ids) means a wrap that a concurrent deletion
        (crypto-shredding a conversation) removed meanwhile never comes back as a new one.
        """
        if not replacements:
            return 0
        wrap = ConversationKeyWrap
        deleted = set(
            session.scalars(
                delete(wrap)
                .where(wrap.id.in_(list(replacements)))
                .returning(wrap.id)
                .execution_options(synchronize_session=False)
            )
        )
        junk = [each for old_id in deleted for each in unproven.get(old_id, [])]
        if junk:
            session.execute(
                delete(wrap).where(wrap.id.in_(junk)).execution_options(synchronize_session=False)
            )
        rows = [new for old_id, new in replacements.items() if new and old_id in deleted]
        if rows:
            session.execute(insert(wrap), rows)
        return len(rows)
