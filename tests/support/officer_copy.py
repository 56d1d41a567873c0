"""A compliance officer attacks a copy of the database offline with their own password.

Issue 11, finding 5: no request, no session, no second officer, no audit entry; only the rows
of the copy and the crypto core. The officer opens their personal private key with their
password, then every archive role key granted to it, then tries each of those keys on every
stored wrap of every conversation (whatever its ``holder`` says), the way a retrieval unwraps
one (``ConversationKeys.open_wrap``: HPKE, then the DEK checked against the commitment).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from access_control import crypto, hybrid_kem
from access_control.password_kdf import open_with_password
from medchat.errors import KeyIntegrityFailure
from medchat.keys.conversation_keys import ConversationKeys
from medchat.keys.custody import _PERSONAL_AAD
from medchat.models import (
    Conversation,
    ConversationKeyWrap,
    Holder,
    KeyRole,
    PersonalKey,
    RoleKey,
    RoleKeyGrant,
)
from medchat.services.context import ServiceContext
from tests.support.accounts import Person

ArchiveKeys = list[tuple[uuid.UUID, hybrid_kem.PrivateKeyHandle]]


def archive_keys_from_copy(runtime: ServiceContext, officer: Person) -> ArchiveKeys:
    """(role key id, private key) of every archive key the officer's password opens."""
    personal_keys = PersonalKey.__table__
    grants, role_keys = RoleKeyGrant.__table__, RoleKey.__table__
    with runtime.database.engine.connect() as copy:
        rows = copy.execute(
            select(personal_keys).where(personal_keys.c.account_id == officer.id)
        ).all()
        granted = copy.execute(
            select(grants.c.wrap, role_keys.c.id, role_keys.c.public_key)
            .join(role_keys, role_keys.c.id == grants.c.role_key_id)
            .where(grants.c.account_id == officer.id, role_keys.c.role == KeyRole.ARCHIVE)
        ).all()
    opened: ArchiveKeys = []
    for row in rows:
        aad = crypto.associated_data(_PERSONAL_AAD, officer.id, row.id)
        personal = hybrid_kem.load_private_key(
            open_with_password(row.private_key_ciphertext, officer.password, aad=aad)
        )
        for wrap, role_key_id, public_key in granted:
            try:
                seed = hybrid_kem.unwrap_key(
                    personal,
                    wrap,
                    recipient_id=officer.id,
                    context_id=role_key_id,
                    purpose=hybrid_kem.PURPOSE_ROLE_KEY,
                )
            except crypto.DecryptionFailed:
                continue  # sealed to another of the officer's personal keys
            key = hybrid_kem.load_private_key(seed)
            assert key.public_key_bytes == public_key
            opened.append((role_key_id, key))
    return opened


def conversations_opened_from_copy(
    runtime: ServiceContext, keys: ArchiveKeys
) -> dict[uuid.UUID, bytes]:
    """Conversation id -> DEK, for every conversation one of ``keys`` opens from a stored wrap."""
    wraps, conversations = ConversationKeyWrap.__table__, Conversation.__table__
    with runtime.database.engine.connect() as copy:
        rows = copy.execute(
            select(wraps.c.wrap, conversations.c.id, conversations.c.key_commitment).join(
                conversations, conversations.c.id == wraps.c.conversation_id
            )
        ).all()
    opened: dict[uuid.UUID, bytes] = {}
    for wrap, conversation_id, commitment in rows:
        for role_key_id, key in keys:
            try:
                dek = ConversationKeys.open_wrap(
                    wrap,
                    key,
                    holder=Holder.ARCHIVE,
                    recipient_id=role_key_id,
                    conversation_id=conversation_id,
                    commitment=commitment,
                )
            except KeyIntegrityFailure:
                continue
            opened[conversation_id] = dek
    return opened
