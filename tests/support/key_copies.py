"""Someone who lost access attacks copies of the database offline (issue 18, item 2).

A copy is every row that matters, read at one moment, as a thief carries it away; the attacker
then works with the crypto core alone (no request, no session, no check of the server's):
their password opens their personal private key in a copy; that key opens their role-key
grants in that copy; a private key they hold is tried on every stored wrap of every copy
(HPKE alone, whatever the row says), and every DEK obtained on every ciphertext of a copy. What
opens is what they read. ``tests/support/officer_copy.py`` is the same for the archive key.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass

from sqlalchemy import select

from access_control import crypto, hybrid_kem
from access_control.password_kdf import open_with_password
from medchat.keys.custody import _PERSONAL_AAD
from medchat.keys.sealing import ContentKey
from medchat.keys.wrap_binding import wrap_purpose
from medchat.models import (
    Attachment,
    Conversation,
    ConversationKeyWrap,
    Message,
    PersonalKey,
    RoleKey,
    RoleKeyGrant,
)
from medchat.services.context import ServiceContext

#: (recipient id in the HPKE info, private key): a role key (its row id) or a personal key.
HeldKey = tuple[uuid.UUID, hybrid_kem.PrivateKeyHandle]


@dataclass(frozen=True, repr=False)
class Copy:
    """The rows of one database copy (lists of row tuples, as a dump has them)."""

    personal_keys: list
    grants: list
    wraps: list
    conversations: list
    messages: list
    attachments: list


def take_copy(runtime: ServiceContext) -> Copy:
    with runtime.database.engine.connect() as connection:

        def rows(table) -> list:  # type: ignore[no-untyped-def]
            return list(connection.execute(select(table)).all())

        grants, role_keys = RoleKeyGrant.__table__, RoleKey.__table__
        return Copy(
            personal_keys=rows(PersonalKey.__table__),
            grants=list(
                connection.execute(
                    select(grants, role_keys.c.role, role_keys.c.public_key).join(
                        role_keys, role_keys.c.id == grants.c.role_key_id
                    )
                ).all()
            ),
            wraps=rows(ConversationKeyWrap.__table__),
            conversations=rows(Conversation.__table__),
            messages=rows(Message.__table__),
            attachments=rows(Attachment.__table__),
        )


def personal_keys_from(copy: Copy, account_id: uuid.UUID, password: str) -> list[HeldKey]:
    """Every personal private key of the account that ``password`` opens in the copy."""
    opened = []
    for row in copy.personal_keys:
        if row.account_id != account_id:
            continue
        aad = crypto.associated_data(_PERSONAL_AAD, account_id, row.id)
        with contextlib.suppress(crypto.DecryptionFailed):
            seed = open_with_password(row.private_key_ciphertext, password, aad=aad)
            opened.append((account_id, hybrid_kem.load_private_key(seed)))
    return opened


def role_keys_from(copy: Copy, account_id: uuid.UUID, password: str, role: str) -> list[HeldKey]:
    """Every ``role`` key the account's grants in the copy hand to its password."""
    personal = personal_keys_from(copy, account_id, password)
    opened = []
    for grant in copy.grants:
        if grant.account_id != account_id or grant.role != role:
            continue
        for _, key in personal:
            with contextlib.suppress(crypto.DecryptionFailed):
                seed = hybrid_kem.unwrap_key(
                    key,
                    grant.wrap,
                    recipient_id=account_id,
                    context_id=grant.role_key_id,
                    purpose=hybrid_kem.PURPOSE_ROLE_KEY,
                )
                opened.append((grant.role_key_id, hybrid_kem.load_private_key(seed)))
    return opened


def deks_from(copies: list[Copy], holder: str, keys: list[HeldKey]) -> set[tuple[uuid.UUID, bytes]]:
    """(conversation id, DEK) for every wrap of every copy one of ``keys`` opens as ``holder``
    (gated archive wraps are left out: the gate key is the server's)."""
    deks = set()
    for copy in copies:
        for wrap in copy.wraps:
            if wrap.holder != holder:
                continue
            for recipient_id, key in keys:
                with contextlib.suppress(crypto.DecryptionFailed):
                    dek = hybrid_kem.unwrap_key(
                        key,
                        wrap.wrap,
                        recipient_id=recipient_id,
                        context_id=wrap.conversation_id,
                        purpose=wrap_purpose(holder),
                    )
                    deks.add((wrap.conversation_id, dek))
    return deks


def readable(copy: Copy, deks: set[tuple[uuid.UUID, bytes]]) -> set[str]:
    """Every subject, message body and attachment file (as text) of the copy that one of the
    DEKs opens."""
    formats = {row.id: row.content_version for row in copy.conversations}
    keys: dict[uuid.UUID, list[ContentKey]] = {}
    for conversation_id, dek in deks:
        if conversation_id in formats:
            keys.setdefault(conversation_id, []).append(
                ContentKey(dek, conversation_id, formats[conversation_id])
            )
    opened: set[str] = set()

    def attempt(conversation_id: uuid.UUID, open_one) -> None:  # type: ignore[no-untyped-def]
        for key in keys.get(conversation_id, []):
            with contextlib.suppress(crypto.DecryptionFailed):
                opened.add(open_one(key))

    for row in copy.conversations:
        if row.subject_ciphertext is not None:
            attempt(row.id, lambda key, row=row: key.open_subject(row.subject_ciphertext))
    for row in copy.messages:
        attempt(row.conversation_id, lambda key, row=row: key.open_body(row, row.body_ciphertext))
    for row in copy.attachments:
        attempt(
            row.conversation_id,
            lambda key, row=row: key.open_attachment(row, "data", row.data_ciphertext).decode(
                "latin-1"
            ),
        )
    return opened
