"""How a conversation key is bound to its place: the wrap for one holder and the key-set tag.

Both are formats stored in the database (``conversation_key_wraps.wrap``, the conversation's
``key_set_tag``), made here and nowhere else: ``ConversationKeys`` seals and checks them on
every conversation, a rotation re-seals wraps and the benchmarks' bulk loads write them. The
holder is part of each wrap's HPKE info and the tag covers (conversation, member, commitment,
content format) under the integrity key kept outside the database (SECURITY-MODEL 10).
"""

from __future__ import annotations

import uuid
from typing import Any

from access_control import crypto, hybrid_kem
from medchat.models import Conversation

_KEY_SET_PURPOSE = "conversation-keys"


def wrap_purpose(holder: str) -> str:
    """The holder is part of the HPKE info: a member wrap cannot pose as a physician wrap."""
    return f"{hybrid_kem.PURPOSE_CONVERSATION_DEK}/{holder}"


def _key_set_fields(
    conversation_id: uuid.UUID, member_id: uuid.UUID, commitment: bytes, content_version: int
) -> dict[str, Any]:
    """What the key-set tag covers, in one place for making and checking it. Its version is
    the conversation's content format (``medchat.keys.sealing``)."""
    return {
        "owner_id": conversation_id,
        "key_id": member_id.bytes,
        "key_bytes": commitment,
        "purpose": _KEY_SET_PURPOSE,
        "version": content_version,
    }


def key_set_tag(integrity_key: bytes, conversation: Conversation) -> bytes:
    """The tag over a conversation's member, key commitment and content format."""
    return crypto.key_integrity_tag(
        integrity_key,
        **_key_set_fields(
            conversation.id,
            conversation.member_id,
            conversation.key_commitment,
            conversation.content_version,
        ),
    )


def verify_key_set_tag(
    integrity_key: bytes,
    tag: bytes,
    *,
    conversation_id: uuid.UUID,
    member_id: uuid.UUID,
    commitment: bytes,
    content_version: int,
) -> None:
    """Raise ``IntegrityCheckFailed`` unless ``tag`` is ``key_set_tag`` of these fields (an
    epoch's row carries its own commitment, so the fields are passed one by one)."""
    crypto.verify_key_integrity(
        integrity_key,
        tag,
        **_key_set_fields(conversation_id, member_id, commitment, content_version),
    )


def seal_wrap(
    recipient: hybrid_kem.KemPublicKey,
    dek: bytes,
    *,
    holder: str,
    recipient_id: uuid.UUID,
    conversation_id: uuid.UUID,
) -> bytes:
    """The wrap of ``dek`` for one holder: HPKE info binds purpose, recipient, conversation."""
    return hybrid_kem.wrap_key_to(
        recipient,
        dek,
        recipient_id=recipient_id,
        context_id=conversation_id,
        purpose=wrap_purpose(holder),
    )
