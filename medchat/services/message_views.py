"""A conversation's subject and messages, decrypted into the views a reader is shown
(``medchat.services.conversation_views``).

The row check and the DEK come first (``ConversationAccess``); ``ConversationReader`` only turns
rows and an opened DEK into views, for members, clinicians and the archive alike. Message pages
are keyset-paginated on the per-conversation sequence number, so page 1 costs the same for 10
messages as for 100,000; one statement reads a page with its clinician authors' display names,
and only the attachments' metadata columns are read, never their sealed bytes. A clinician is
shown by display name only ("Dr. A."), a member by nothing at all.

Each body opens only with its own sequence number and author, and each attachment field only
under its own message (``medchat.keys.sealing``, format 2): a row relabelled or moved in the
database does not open (``DecryptionFailed``), and the read is refused as a whole (409
``key_integrity_failed``), never shown with another author, order or message.

Attachment names: with ``neutral_names`` (every reader but the member:
``medchat.services.patient_view.sees_upload_names``) a file is shown as ``photo-2.jpg``, its
kind and its order among the conversation's files of that kind (``neutral_attachment_views``);
the name it was uploaded under is then not even decrypted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import BindParameter, and_, bindparam, exists, select
from sqlalchemy.orm import Session

from access_control.crypto import DecryptionFailed
from medchat.db import table_of
from medchat.db_driver import DriverStatement
from medchat.errors import ContentResealed
from medchat.files import names as attachment_names
from medchat.keys.epochs import ConversationDeks, current_epoch
from medchat.keys.sealing import ContentKey
from medchat.models import Account, Attachment, Conversation, ConversationRow, Message
from medchat.services.conversation_pages import Page
from medchat.services.conversation_views import (
    HISTORY_PENDING,
    AttachmentView,
    ConversationView,
    MessageView,
)
from medchat.services.display_names import display_names

# Statements built once with bound parameters: building a statement costs more CPU than
# running it.
_ATTACHMENTS = (
    select(
        Attachment.id,
        Attachment.message_id,
        Attachment.size,
        Attachment.filename_ciphertext,
        Attachment.content_type_ciphertext,
    )
    .where(Attachment.message_id.in_(bindparam("message_ids", expanding=True)))
    .order_by(Attachment.created_at)
)
#: Every attachment of a conversation in the order it was sent, with the one sealed field a
#: neutral name needs: its type (``neutral_attachment_views``).
_CONVERSATION_ATTACHMENTS = (
    select(
        Attachment.id,
        Attachment.message_id,
        Attachment.size,
        Attachment.content_type_ciphertext,
    )
    .join(Message, Message.id == Attachment.message_id)
    .where(Attachment.conversation_id == bindparam("conversation_id"))
    .order_by(Message.seq, Attachment.id)
)
#: A page of messages in one statement: the clinician author's display name joined (members
#: are never named), and whether a message has attachments (only those are looked up). Made
#: of the tables' columns: a statement of mapped attributes goes through the ORM's result
#: machinery even when it loads no object.
_messages, _accounts, _attachments = table_of(Message), table_of(Account), table_of(Attachment)
_PAGE = (
    select(
        _messages.c.id,
        _messages.c.seq,
        _messages.c.author_role,
        _messages.c.author_id,
        _messages.c.body_ciphertext,
        _messages.c.created_at,
        _accounts.c.display_name.label("author_name"),
        exists().where(_attachments.c.message_id == _messages.c.id).label("has_attachments"),
    )
    .select_from(_messages)
    .outerjoin(
        _accounts,
        and_(_accounts.c.id == _messages.c.author_id, _messages.c.author_role == "clinician"),
    )
    .where(_messages.c.conversation_id == bindparam("conversation_id"))
)
#: The page's columns, in ``_PAGE``'s order: ``message_page`` reads its rows by position.
PAGE_COLUMNS = (
    "id",
    "seq",
    "author_role",
    "author_id",
    "body_ciphertext",
    "created_at",
    "author_name",
    "has_attachments",
)
_SEQ, _HAS_ATTACHMENTS = PAGE_COLUMNS.index("seq"), PAGE_COLUMNS.index("has_attachments")


def _page(ascending: bool, after_cursor: bool) -> DriverStatement:
    """A page in one direction, from the start or after a cursor. A plain read: on a
    connection with no transaction open (a member's read), it opens none
    (``db_driver.outside_transaction``)."""
    seq = _messages.c.seq
    statement = _PAGE
    if after_cursor:
        cursor: BindParameter[int] = bindparam("cursor")
        statement = statement.where(seq > cursor if ascending else seq < cursor)
    order = seq.asc() if ascending else seq.desc()
    return DriverStatement(
        statement.order_by(order).limit(bindparam("limit")), outside_transaction=True
    )


#: Run through the driver on PostgreSQL (``medchat.db_driver``): a read-50's largest statement.
_PAGES = {
    (ascending, after_cursor): _page(ascending, after_cursor)
    for ascending in (False, True)
    for after_cursor in (False, True)
}


_CONTENT_VERSION = select(Conversation.content_version).where(
    Conversation.id == bindparam("conversation_id")
)


@contextmanager
def resealed_meanwhile(
    session: Session, key: ContentKey, conversation: ConversationRow
) -> Iterator[None]:
    """Around the opening of a conversation's content: tell a re-seal race from tampering.

    A ciphertext that does not open under its place was moved, relabelled or altered:
    ``DecryptionFailed`` goes on, to be refused (409 ``key_integrity_failed``, never shown).
    The innocent causes: the conversation moved to a newer format after its key set was
    verified (``medchat keys reseal-content`` committed while this request read it, on
    PostgreSQL), or a send began a new key epoch after this request opened the conversation's
    keys and before it read the rows (``medchat.keys.epochs``). That is ``ContentResealed`` (409
    ``content_resealed``): the next read opens it, or fails the key-set tag if a writer changed
    the column instead.
    """
    try:
        yield
    except DecryptionFailed:
        stored = session.scalar(_CONTENT_VERSION, {"conversation_id": conversation.id})
        if stored is not None and stored != key.format:
            raise ContentResealed from None
        if key.epochs is not None and current_epoch(session, conversation.id) > key.epochs:
            raise ContentResealed from None
        raise


def neutral_attachment_views(
    session: Session, key: ContentKey, conversation_id: uuid.UUID
) -> list[tuple[uuid.UUID, AttachmentView]]:
    """Each attachment of the conversation with its message id, named neutrally, in order.

    The order is the order of sending (message sequence numbers), so a name never changes once
    given: ``photo-1.jpg`` stays the first photo. One query over the metadata columns; only
    the types are opened (a name needs every earlier file's kind), never the uploaded names
    or the bytes. A type that does not open raises ``DecryptionFailed``, as for any read.
    """
    counts: dict[str, int] = {}
    views = []
    for row in session.execute(_CONVERSATION_ATTACHMENTS, {"conversation_id": conversation_id}):
        content_type = key.open_attachment_text(row, "content_type", row.content_type_ciphertext)
        kind = attachment_names.kind_of(content_type)
        counts[kind] = counts.get(kind, 0) + 1
        name = attachment_names.neutral_name(content_type, counts[kind])
        views.append((row.message_id, AttachmentView(row.id, name, content_type, row.size)))
    return views


class ConversationReader:
    """Views of one conversation's content, given its opened DEK (no access decision here)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def subject_of(self, conversation: Conversation, dek: ConversationDeks) -> str | None:
        if conversation.subject_ciphertext is None:
            return None
        # Both formats seal the subject alike: a re-seal never changes it.
        key = ContentKey.for_conversation(dek, conversation)
        return key.open_subject(conversation.subject_ciphertext)

    def conversation_view(
        self, conversation: Conversation, dek: ConversationDeks
    ) -> ConversationView:
        return ConversationView(
            id=conversation.id,
            subject=self.subject_of(conversation, dek),
            status=conversation.status,
            created_at=conversation.created_at,
            last_message_at=conversation.last_message_at,
            status_since=conversation.status_since,
            urgent=bool(conversation.urgent),
            member_id=conversation.member_id,
        )

    @staticmethod
    def unavailable_view(
        conversation: Conversation, reason: str = HISTORY_PENDING
    ) -> ConversationView:
        """A conversation listed without content: metadata only, no subject, and why."""
        return ConversationView(
            id=conversation.id,
            subject=None,
            status=conversation.status,
            created_at=conversation.created_at,
            last_message_at=conversation.last_message_at,
            status_since=conversation.status_since,
            urgent=bool(conversation.urgent),
            member_id=conversation.member_id,
            readable=False,
            unavailable=reason,
        )

    def message_views(
        self,
        conversation: ConversationRow,
        dek: ConversationDeks,
        messages: Sequence[Message],
        *,
        with_attachments: bool = True,
        neutral_names: bool = False,
    ) -> list[MessageView]:
        """Decrypt messages and their attachments' metadata (two queries).

        Only the attachments' metadata columns are read, never their (large) sealed bytes;
        ``with_attachments=False`` skips the query for a message known to have none;
        ``neutral_names`` names the files by kind and order (module docstring).
        """
        key = ContentKey.for_conversation(dek, conversation)
        names = display_names(
            self.session, {m.author_id for m in messages if m.author_role == "clinician"}
        )
        ids = [m.id for m in messages] if with_attachments else []
        with resealed_meanwhile(self.session, key, conversation):
            return self._views(
                key,
                messages,
                # Members see their doctor by display name only ("Dr. A."), never an e-mail.
                [
                    names.get(m.author_id) if m.author_role == "clinician" else None
                    for m in messages
                ],
                self._attachment_views(key, ids, conversation.id if neutral_names else None),
            )

    def _attachment_views(
        self,
        key: ContentKey,
        message_ids: list[uuid.UUID],
        neutral_in: uuid.UUID | None = None,
    ) -> dict[uuid.UUID, list[AttachmentView]]:
        """The messages' attachments by message id; named neutrally when ``neutral_in`` (their
        conversation's id) is given, under their uploaded names otherwise."""
        attachments: dict[uuid.UUID, list[AttachmentView]] = {}
        if not message_ids:
            return attachments
        if neutral_in is not None:
            wanted = set(message_ids)
            for message_id, view in neutral_attachment_views(self.session, key, neutral_in):
                if message_id in wanted:
                    attachments.setdefault(message_id, []).append(view)
            return attachments
        for row in self.session.execute(_ATTACHMENTS, {"message_ids": message_ids}):
            attachments.setdefault(row.message_id, []).append(
                AttachmentView(
                    id=row.id,
                    filename=key.open_attachment_text(row, "filename", row.filename_ciphertext),
                    content_type=key.open_attachment_text(
                        row, "content_type", row.content_type_ciphertext
                    ),
                    size=row.size,
                )
            )
        return attachments

    @staticmethod
    def _views(
        key: ContentKey,
        messages: Iterable[Any],
        author_names: Iterable[str | None],
        attachments: dict[uuid.UUID, list[AttachmentView]],
    ) -> list[MessageView]:
        return [
            MessageView(
                id=m.id,
                author=m.author_role,
                author_name=name,
                body=key.open_body(m, m.body_ciphertext),
                created_at=m.created_at,
                seq=m.seq,
                attachments=attachments.get(m.id, []),
            )
            for m, name in zip(messages, author_names, strict=True)
        ]

    def message_page(
        self,
        conversation: ConversationRow,
        dek: ConversationDeks,
        *,
        limit: int,
        before_seq: int | None = None,
        after_seq: int | None = None,
        ascending: bool = False,
        neutral_names: bool = False,
    ) -> Page[MessageView, int]:
        """One page of messages: newest first by default, oldest first with ``ascending``.

        The cursor is a sequence number, so the query is an index range scan on
        (conversation_id, seq) whatever the conversation's length. One statement reads the
        page with its clinician authors' display names; attachments are looked up only for
        messages that have some (named as in ``message_views``).
        """
        cursor = after_seq if ascending else before_seq
        params: dict[str, Any] = {"conversation_id": conversation.id, "limit": limit + 1}
        if cursor is not None:
            params["cursor"] = cursor
        # Rows are read by position (PAGE_COLUMNS): a row's attribute costs a name lookup
        # each time, and a page would read eleven of them for each of its fifty rows.
        # Pending changes first, as ``Session.execute`` would (autoflush).
        self.session.flush()
        rows = _PAGES[ascending, cursor is not None].all(self.session.connection(), params)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = rows[-1][_SEQ] if more and rows else None
        key = ContentKey.for_conversation(dek, conversation)
        with resealed_meanwhile(self.session, key, conversation):
            attachments = self._attachment_views(
                key,
                [row[0] for row in rows if row[_HAS_ATTACHMENTS]],
                conversation.id if neutral_names else None,
            )
            views = [
                MessageView(
                    id=id_,
                    author=role,
                    author_name=author_name,
                    body=key.open_body_at(id_, seq, role, author_id, sealed),
                    created_at=created_at,
                    seq=seq,
                    attachments=attachments.get(id_, []),
                )
                for id_, seq, role, author_id, sealed, created_at, author_name, _ in rows
            ]
        return Page(views, next_cursor)
