"""Per-conversation keys, wrapped for three holders and checked on every unwrap.

SECURITY-MODEL 1-2 and 10: each conversation has its own random 256-bit DEK, stored only as
HPKE wraps for the physician role key, the member's personal key and the compliance archive
key; while the conversation is live its archive wrap is gated by a server key
(``medchat.archive.gate``), so the archive key opens sealed records only. Sealing needs only
public keys (so any code path can create a conversation); each is checked first: role keys
against the deployment's pins, the member's key against its integrity tag. The conversation
row keeps a commitment to the DEK and a tag over (conversation, member, commitment, content
format) made with the integrity key outside the database: a wrap
swapped for one sealing a key of someone else's choosing opens to a DEK that fails the
commitment, and a commitment swapped with it fails the tag. Either way the read is refused,
never silently served. Content itself is sealed by ``medchat.keys.sealing`` under the DEK this
module returns, in the format the tag vouches for (``conversations.content_version`` is the
tag's version), so a writer who sets a conversation back to the older, weaker format fails it.

A conversation has one DEK per key epoch (``medchat.keys.epochs``): ``new_key`` begins epoch 1,
``start_epoch`` a later one (a fresh DEK, wrapped to the active keys and the member's current
key only, or their successors), ``open_key`` opens every epoch. Each epoch's commitment is in
its tagged row; epoch 1's is the conversation row's too. Nothing is sealed while a role key's
rotation is overdue (``medchat.keys.rotation_deadline``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from access_control import crypto, hybrid_kem
from access_control.keyring import HeldRoleKey, Keyring
from access_control.unwrap_memo import UnwrapMemo
from medchat.archive.gate import GATED, ArchiveGate, must_gate
from medchat.errors import Conflict, KeyIntegrityFailure, NotFound
from medchat.keys.custody import KeyCustody
from medchat.keys.epochs import (
    ConversationDeks,
    EpochWraps,
    commitment_of,
    current_epoch,
    holder_wraps,
    new_epoch_row,
    removals_recorded,
)
from medchat.keys.sealing import CURRENT_FORMAT
from medchat.keys.successors import epoch_keys
from medchat.keys.wrap_binding import key_set_tag, seal_wrap, verify_key_set_tag, wrap_purpose
from medchat.models import Conversation, ConversationKeyWrap, ConversationRow, Holder, KeyRole


class ConversationKeys:
    """Creates a conversation's DEK and its wraps; opens it for a caller's keyring."""

    def __init__(
        self,
        session: Session,
        custody: KeyCustody,
        integrity_key: bytes,
        gate: ArchiveGate,
        rotation_deadline: timedelta = timedelta(hours=72),
    ) -> None:
        self.session = session
        self.custody = custody
        self._integrity_key = integrity_key
        self._gate = gate
        self._rotation_deadline = rotation_deadline
        # Process memory shared by the sessions of this database (``Database.info``).
        self._memo: UnwrapMemo | None = session.info.get("unwrap_memo")

    def new_key(self, conversation: Conversation, now: datetime) -> ConversationDeks:
        """Generate the DEK of epoch 1, wrap it for the three holders, set commitment and tag.

        The conversation is new, hence live: its archive wrap is gated (``add_wrap``).

        Raises ``KeysNotInitialized`` before ``keys init``, ``KeyIntegrityFailure`` if a role
        key is not pinned or the member's key fails its tag, ``RotationOverdue`` past a role
        key's rotation deadline: nothing is sealed then.
        """
        dek = crypto.generate_key()
        conversation.key_commitment = crypto.key_commitment(dek, conversation.id)
        conversation.content_version = CURRENT_FORMAT
        conversation.key_tag = key_set_tag(self._integrity_key, conversation)
        deks = ConversationDeks(conversation.id, {1: dek})
        self._begin(conversation, deks, 1, dek, now)
        return deks

    def start_epoch(
        self, conversation: ConversationRow, deks: ConversationDeks, now: datetime
    ) -> int:
        """Begin the next key epoch of a verified conversation: new content goes under a fresh
        DEK wrapped to the active role keys and the member's current key (``key_epochs``).

        ``deks`` (every epoch, opened by the caller) gains it. Raises ``Conflict`` when another
        writer began an epoch since ``deks`` were read (the caller reads them again first:
        ``ConversationAccess.ready_to_seal``), and what ``new_key`` raises.
        """
        number = current_epoch(self.session, conversation.id) + 1
        if number != deks.current + 1:
            raise Conflict("This conversation changed while it was written to; send it again.")
        dek = crypto.generate_key()
        self._begin(conversation, deks, number, dek, now)
        return number

    def _begin(
        self,
        conversation: ConversationRow,
        deks: ConversationDeks,
        epoch: int,
        dek: bytes,
        now: datetime,
    ) -> None:
        """The epoch's tagged row and its three wraps, to the keys it records."""
        physician, archive = epoch_keys(self.custody, self._rotation_deadline, now)
        member = self.custody.verified_personal_key(conversation.member_id)
        row = new_epoch_row(
            conversation,
            epoch,
            crypto.key_commitment(dek, conversation.id),
            member_key_id=member.key_id,
            versions=(physician.version, archive.version),
            removals=removals_recorded(self.session),
            now=now,
        )
        self.session.add(row)
        recipients = (
            (Holder.PHYSICIAN, physician.id, physician.public_key, physician.key_id),
            (Holder.ARCHIVE, archive.id, archive.public_key, archive.key_id),
            (Holder.MEMBER, conversation.member_id, member.public_key, member.key_id),
        )
        for holder, recipient_id, public_key, key_id in recipients:
            self.add_wrap(
                conversation, dek, holder, recipient_id, public_key, key_id, now, epoch=epoch
            )
        if epoch > 1:
            deks.begin(epoch, dek, row)
        else:
            deks.rows[1] = row
            deks.begun = 1

    def add_wrap(
        self,
        conversation: ConversationRow,
        dek: bytes,
        holder: str,
        recipient_id: uuid.UUID,
        public_key: bytes,
        key_id: bytes,
        now: datetime,
        *,
        epoch: int = 1,
    ) -> None:
        """Seal one epoch's ``dek`` to one more recipient (new epoch, re-wrap).

        An archive wrap is stored gated unless the conversation is sealed (nothing adds one
        to a sealed conversation today). A rotation re-seals thousands at once with
        ``open_wrap`` and ``seal_wrap`` and inserts the rows in bulk
        (``medchat.keys.rotation_wraps``); the bytes are the same.
        """
        wrap = seal_wrap(
            hybrid_kem.load_public_key(public_key),
            dek,
            holder=holder,
            recipient_id=recipient_id,
            conversation_id=conversation.id,
        )
        if must_gate(holder, conversation.status):
            holder = GATED
            wrap = self._gate.close(wrap, conversation_id=conversation.id, recipient_key_id=key_id)
        self.session.add(
            ConversationKeyWrap(
                conversation_id=conversation.id,
                epoch=epoch,
                holder=holder,
                recipient_key_id=key_id,
                wrap=wrap,
                created_at=now,
            )
        )

    def verify_conversation(self, conversation: ConversationRow) -> None:
        """``verify_key_set`` for a loaded conversation row."""
        self.verify_key_set(
            conversation.id,
            conversation.member_id,
            conversation.key_commitment,
            conversation.key_tag,
            conversation.content_version,
        )

    def verify_key_set(
        self,
        conversation_id: uuid.UUID,
        member_id: uuid.UUID,
        commitment: bytes,
        tag: bytes,
        content_version: int,
    ) -> None:
        """Raise ``KeyIntegrityFailure`` unless the commitment and the content format are the
        ones the tag vouches for."""
        try:
            verify_key_set_tag(
                self._integrity_key,
                tag,
                conversation_id=conversation_id,
                member_id=member_id,
                commitment=commitment,
                content_version=content_version,
            )
        except crypto.IntegrityCheckFailed as exc:
            raise KeyIntegrityFailure("This conversation's key set was altered.") from exc

    def retag(self, conversation: Conversation, content_version: int) -> None:
        """Move a verified conversation to another content format: the tag is made anew.

        Only for a caller that verified the old tag and re-sealed every row of the
        conversation in this transaction (``medchat.keys.content_upgrade``).
        """
        conversation.content_version = content_version
        conversation.key_tag = key_set_tag(self._integrity_key, conversation)

    @staticmethod
    def open_wrap(
        wrap: bytes,
        private_key: hybrid_kem.PrivateKeyHandle,
        *,
        holder: str,
        recipient_id: uuid.UUID,
        conversation_id: uuid.UUID,
        commitment: bytes,
    ) -> bytes:
        """Unwrap a DEK and check it against the conversation's (verified) commitment.

        Raises ``KeyIntegrityFailure`` when the wrap does not open or opens to another key:
        a swapped wrap is refused, never used or re-sealed.
        """
        try:
            dek = hybrid_kem.unwrap_key(
                private_key,
                wrap,
                recipient_id=recipient_id,
                context_id=conversation_id,
                purpose=wrap_purpose(holder),
            )
            crypto.verify_key_commitment(dek, commitment, conversation_id)
        except (crypto.DecryptionFailed, crypto.IntegrityCheckFailed) as exc:
            raise KeyIntegrityFailure(
                "This conversation's key does not match its commitment."
            ) from exc
        return dek

    def open_key(
        self,
        conversation: ConversationRow,
        keyring: Keyring,
        holder: str,
        *,
        wraps: EpochWraps | None = None,
    ) -> ConversationDeks:
        """Every epoch's DEK of the conversation, opened with keys the caller's session holds.

        Raises ``NotFound`` when the caller holds no key with a wrap of some epoch here (for a
        member, a history that is not re-sealed yet) and ``KeyIntegrityFailure`` when the key
        set was tampered with (a tag, a wrap, a commitment, an epoch's row). ``wraps`` are the
        holder's wraps when the caller read them already, in this transaction, with the
        conversation row.

        A role holder's session opened before a rotation holds only the old role key, and the
        rotation re-seals every wrap to the new one; the session's own personal key opens the
        holder's current grants (exactly what signing in again would do), so it keeps reading
        without a new sign-in. A revoked holder has no grants left, so this opens nothing.

        ``holder`` is one of the three holders: an archive caller finds plain archive wraps
        only (a sealed conversation's), never a gated one.
        """
        if holder not in (Holder.MEMBER, Holder.PHYSICIAN, Holder.ARCHIVE):
            raise ValueError(f"no holder {holder!r} opens a conversation key")
        self.verify_conversation(conversation)
        if wraps is None:
            wraps = holder_wraps(self.session, conversation.id, holder)
        # The session's keys by key id, made on the first epoch the memo does not know: a key
        # id is a hash of the public key, which costs deriving the key pair from its seed
        # (ML-KEM-768 key generation, about a twentieth of a read's CPU), and a memo hit
        # needs no key at all.
        candidates: dict[bytes, tuple[uuid.UUID, hybrid_kem.PrivateKeyHandle]] | None = None
        fresher: dict[bytes, tuple[uuid.UUID, hybrid_kem.PrivateKeyHandle]] | None = None
        deks = {}
        for epoch in range(1, wraps.current + 1):
            commitment = commitment_of(conversation, epoch, wraps.rows)
            held = wraps.wraps.get(epoch, {})
            dek = self._recall(conversation, keyring, holder, held, commitment)
            if dek is None:
                if candidates is None:
                    candidates = self._candidates(keyring, holder, conversation)
                dek = self._open_with(conversation, holder, candidates, held, commitment, keyring)
            if dek is None and holder != Holder.MEMBER and keyring.personal is not None:
                if fresher is None:
                    fresher = self._fresher(keyring, holder)
                dek = self._open_with(conversation, holder, fresher, held, commitment, None)
            if dek is None:
                raise NotFound("No key this session holds opens this conversation.")
            deks[epoch] = dek
        return ConversationDeks(conversation.id, deks, wraps.rows)

    def _fresher(
        self, keyring: Keyring, holder: str
    ) -> dict[bytes, tuple[uuid.UUID, hybrid_kem.PrivateKeyHandle]]:
        """The role keys the session's personal key opens today (the session's own among them:
        none has a wrap here, or it would have opened already)."""
        if keyring.personal is None:  # only a keyring with a personal key reaches here
            raise NotFound
        return _role_candidates(
            self.custody.open_grants(keyring.account_id, keyring.personal), holder
        )

    def _recall(
        self,
        conversation: ConversationRow,
        keyring: Keyring,
        holder: str,
        wraps: dict[bytes, bytes],
        commitment: bytes,
    ) -> bytes | None:
        """A DEK this session unwrapped before from one of these very wraps (``unwrap_memo``),
        checked against the epoch's commitment like a fresh unwrap."""
        if self._memo is None:
            return None
        for wrap in wraps.values():
            dek = self._memo.recall(keyring, conversation.id, holder, wrap)
            if dek is None:
                continue
            try:
                crypto.verify_key_commitment(dek, commitment, conversation.id)
            except crypto.IntegrityCheckFailed as exc:
                raise KeyIntegrityFailure(
                    "This conversation's key does not match its commitment."
                ) from exc
            return dek
        return None

    def _open_with(
        self,
        conversation: ConversationRow,
        holder: str,
        candidates: dict[bytes, tuple[uuid.UUID, hybrid_kem.PrivateKeyHandle]],
        wraps: dict[bytes, bytes],
        commitment: bytes,
        keyring: Keyring | None,
    ) -> bytes | None:
        for key_id, (recipient_id, private_key) in candidates.items():
            wrap = wraps.get(key_id)
            if wrap is None:
                continue
            dek = self.open_wrap(
                wrap,
                private_key,
                holder=holder,
                recipient_id=recipient_id,
                conversation_id=conversation.id,
                commitment=commitment,
            )
            if self._memo is not None and keyring is not None:
                self._memo.remember(keyring, conversation.id, holder, wrap, dek)
            return dek
        return None

    @staticmethod
    def _candidates(
        keyring: Keyring, holder: str, conversation: ConversationRow
    ) -> dict[bytes, tuple[uuid.UUID, hybrid_kem.PrivateKeyHandle]]:
        if holder == Holder.MEMBER:
            if keyring.personal is None or keyring.account_id != conversation.member_id:
                return {}
            return {keyring.personal.key_id: (keyring.account_id, keyring.personal)}
        return _role_candidates(keyring.roles, holder)


def _role_candidates(
    held: Iterable[HeldRoleKey], holder: str
) -> dict[bytes, tuple[uuid.UUID, hybrid_kem.PrivateKeyHandle]]:
    """The held keys of the holder's role, by key id, each with the role key row it opens."""
    role = KeyRole.PHYSICIAN if holder == Holder.PHYSICIAN else KeyRole.ARCHIVE
    return {each.key.key_id: (each.role_key_id, each.key) for each in held if each.role == role}
