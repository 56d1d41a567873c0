"""Checking SECURITY-MODEL key hierarchy 2 on stored rows: a DEK (of any key epoch) is wrapped
only to the three holders (physician role key, compliance archive key, the member's current
personal key), and (key hierarchy 10) a live conversation's archive wrap is gated."""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import and_, select

from access_control import crypto, hybrid_kem
from access_control.keyring import Keyring
from medchat.archive.gate import GATED, wrapped_for
from medchat.keys.epochs import epoch_commitment
from medchat.keys.wrap_binding import wrap_purpose
from medchat.models import (
    Conversation,
    ConversationKeyEpoch,
    ConversationKeyWrap,
    ConversationStatus,
    Holder,
    KeyRole,
)
from medchat.services.context import ServiceContext


def assert_only_the_three_holders(
    runtime: ServiceContext,
    member_id: uuid.UUID,
    *,
    physician: Keyring,
    archive: Keyring,
    member: Keyring | None,
) -> Counter[str]:
    """Every wrap of the member's conversations names one of the three holders' current keys
    and opens with that key to the committed DEK (an archive wrap through its gate, which a
    live conversation's must have); returns the holders counted.

    ``member`` is the member's keyring of a session opened after the last reset (None when
    no member wrap may exist yet).
    """
    (held_physician,) = physician.role_keys(KeyRole.PHYSICIAN)
    (held_archive,) = archive.role_keys(KeyRole.ARCHIVE)
    expected = {
        Holder.PHYSICIAN: (held_physician.key, held_physician.role_key_id),
        Holder.ARCHIVE: (held_archive.key, held_archive.role_key_id),
    }
    with runtime.database.transaction() as session:
        current = runtime.custody(session).personal_key(member_id)
        assert current is not None
        if member is not None:
            assert member.personal is not None and member.personal.key_id == current.key_id
            expected[Holder.MEMBER] = (member.personal, member_id)
        allowed = {held_physician.key.key_id, held_archive.key.key_id, current.key_id}
        rows = session.execute(
            select(ConversationKeyWrap, Conversation, ConversationKeyEpoch)
            .join(Conversation, Conversation.id == ConversationKeyWrap.conversation_id)
            .outerjoin(
                ConversationKeyEpoch,
                and_(
                    ConversationKeyEpoch.conversation_id == ConversationKeyWrap.conversation_id,
                    ConversationKeyEpoch.epoch == ConversationKeyWrap.epoch,
                ),
            )
            .where(Conversation.member_id == member_id)
        ).all()
        holders: Counter[str] = Counter()
        for wrap, conversation, epoch in rows:
            holder = wrapped_for(wrap.holder)
            sealed = wrap.wrap
            if wrap.holder == GATED:
                sealed = runtime.archive_gate.open(
                    sealed, conversation_id=conversation.id, recipient_key_id=wrap.recipient_key_id
                )
            elif holder == Holder.ARCHIVE:
                assert conversation.status == ConversationStatus.SEALED, "a live archive wrap"
            assert wrap.recipient_key_id in allowed, f"a {wrap.holder} wrap names another key"
            assert hybrid_kem.wrap_key_id(sealed) in allowed, "a wrap sealed to another key"
            assert holder in expected, f"unexpected {wrap.holder} wrap"
            private, recipient_id = expected[Holder(holder)]
            assert wrap.recipient_key_id == private.key_id
            dek = hybrid_kem.unwrap_key(
                private,
                sealed,
                recipient_id=recipient_id,
                context_id=conversation.id,
                purpose=wrap_purpose(holder),
            )
            commitment = epoch_commitment(
                conversation.id, conversation.key_commitment, wrap.epoch, epoch
            )
            crypto.verify_key_commitment(dek, commitment, conversation.id)
            holders[holder] += 1
    return holders
