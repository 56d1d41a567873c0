"""Content is sealed under the conversation's DEK, bound to its place (SECURITY-MODEL 1, 10).

Subject, message bodies, attachment bytes, file names and types are each encrypted with
AES-256-GCM under the DEK, with associated data that says where the ciphertext belongs, so a
row copied, moved or relabelled by someone who can write the database fails to open.

The associated data of each format, the one definition every writer and reader uses
(``crypto.associated_data``: typed, length-prefixed parts)::

    any format         draft            ("medchat/draft/v1", conversation, author id)
    format 1 (PLACE)   message body     ("medchat/content/v1", conversation, message id, "body")
                       attachment field ("medchat/content/v1", conversation, attachment id, field)
    format 2 (BOUND)   message body     ("medchat/content/v2", conversation, message id, "body",
                                         seq, author_role, author_id)
                       attachment field ("medchat/content/v2", conversation, attachment id, field,
                                         message id)
    both               subject          ("medchat/content/v1", conversation, conversation,
                                         "subject")

Format 1 left the author, the sequence number and an attachment's message outside the
ciphertext, so an SQL ``UPDATE`` could show a member's words as the doctor's, reorder a
conversation or move a file to another message. Format 2 binds them. The subject's place is its
conversation and nothing else, so both formats seal it alike.

Every row of one conversation uses one format, ``conversations.content_version``. That column
is a writer's to flip, so it is never trusted alone: the conversation's key-set tag (made with
the integrity key outside the database, ``medchat.keys.conversation_keys``) covers it, and the
version is read only from a row whose tag was verified when its DEK was opened. New
conversations are format 2; older ones stay format 1 until ``medchat keys reseal-content``
(``medchat.keys.content_upgrade``) re-seals them.

A conversation has one DEK per key epoch (``medchat.keys.epochs``): new content is sealed under
the current epoch's, and every envelope names the key id that sealed it
(``crypto.envelope_key_id``), so each ciphertext is opened with its own epoch's DEK, whatever
its field. The key id is authenticated in the envelope and each DEK is random, so naming
another epoch's key opens nothing.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Protocol

from access_control import crypto
from medchat.keys.epochs import ConversationDeks
from medchat.models import ConversationRow

_LABELS = {1: "medchat/content/v1", 2: "medchat/content/v2"}
_SUBJECT_LABEL = _LABELS[1]
#: A clinician's unsent answer: its own label, in every format (a re-seal of the content
#: leaves drafts as they are), bound to the conversation and its author.
_DRAFT_LABEL = "medchat/draft/v1"
#: The field part of a body's associated data, the same in every one.
_BODY_PART = crypto.associated_data("body")


class ContentFormat(enum.IntEnum):
    """What a conversation's associated data binds (``conversations.content_version``)."""

    #: Conversation, row and field: the place only.
    PLACE = 1
    #: Also a body's sequence number and author, and an attachment's message.
    BOUND = 2


#: The format of every conversation created now.
CURRENT_FORMAT = ContentFormat.BOUND


class MessagePlace(Protocol):
    """What a message body is bound to besides its conversation (a ``Message`` or a row)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def seq(self) -> int: ...
    @property
    def author_role(self) -> str: ...
    @property
    def author_id(self) -> uuid.UUID: ...


class AttachmentPlace(Protocol):
    """What an attachment field is bound to besides its conversation (an ``Attachment``)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def message_id(self) -> uuid.UUID: ...


@dataclass(frozen=True)
class MessageLabel:
    """A message's place before its row exists (a send seals the body, then inserts)."""

    id: uuid.UUID
    seq: int
    author_role: str
    author_id: uuid.UUID


class ContentKey(crypto.SecretHandle):
    """A conversation's DEKs with the format its rows use: seals and opens their content.

    Build it with ``for_conversation`` from a conversation whose DEKs were just opened (the
    opening verified the key-set tag, and with it the format). Content is sealed under the
    current epoch's DEK; an envelope is opened under the DEK whose key id it names. The AES-GCM
    keys, their key ids and the (label, conversation) head of the associated data are made
    once, so a page of messages pays for them once (``associated_data`` encodes each part on
    its own, so the head's encoding is a prefix of every field's). Raises
    ``crypto.DecryptionFailed`` from every ``open_*`` when the ciphertext was moved,
    relabelled, altered, is foreign or names a key of none of the epochs.
    """

    __slots__ = (
        "_aad_head",
        "_authors",
        "_conversation_id",
        "_keys",
        "_sealing",
        "epochs",
        "format",
    )

    def __init__(
        self, deks: ConversationDeks | bytes, conversation_id: uuid.UUID, content_format: int
    ) -> None:
        self.format = ContentFormat(content_format)
        #: The highest key epoch these keys open (None: one DEK given as bytes).
        self.epochs: int | None = None
        if isinstance(deks, ConversationDeks):
            keys = [crypto.AeadKey(dek) for dek in deks.all()]
            self._sealing = keys[-1]  # epochs in order: the current one last
            self.epochs = deks.current
        else:
            self._sealing = crypto.AeadKey(deks)
            keys = [self._sealing]
        self._keys = {key.key_id: key for key in keys}
        self._conversation_id = conversation_id
        self._aad_head = crypto.associated_data(_LABELS[self.format], conversation_id)
        #: (author_role, author_id) -> their encoded parts: a page has few authors.
        self._authors: dict[tuple[str, uuid.UUID], bytes] = {}

    @classmethod
    def for_conversation(
        cls, deks: ConversationDeks | bytes, conversation: ConversationRow
    ) -> ContentKey:
        """The key for ``conversation``'s rows, in the format its verified key set names."""
        return cls(deks, conversation.id, conversation.content_version)

    def sealing_like(self, envelope: bytes, content_format: int) -> ContentKey:
        """The same DEKs, sealing under the one that sealed ``envelope``, in another format:
        a re-seal keeps each ciphertext in its own epoch (``content_resealing``)."""
        other = ContentKey.__new__(ContentKey)
        other.format = ContentFormat(content_format)
        other._keys = self._keys
        other._sealing = self._key_for(envelope)
        other._conversation_id = self._conversation_id
        other.epochs = self.epochs
        other._aad_head = crypto.associated_data(_LABELS[other.format], self._conversation_id)
        other._authors = {}
        return other

    def __repr__(self) -> str:
        return (
            f"ContentKey(conversation={self._conversation_id}, format={int(self.format)},"
            f" epochs={len(self._keys)})"
        )

    def _key_for(self, envelope: bytes) -> crypto.AeadKey:
        key = self._keys.get(crypto.envelope_key_id(envelope))
        if key is None:
            raise crypto.DecryptionFailed
        return key

    def _open(self, envelope: bytes, aad: bytes) -> bytes:
        return self._key_for(envelope).open(envelope, aad)

    # -- associated data: the one definition of each format ---------------------------------

    def _body_aad(
        self,
        message_id: uuid.UUID,
        seq: int,
        author_role: str,
        author_id: uuid.UUID,
    ) -> bytes:
        if self.format is ContentFormat.PLACE:
            return self._aad_head + crypto.associated_data(message_id, "body")
        # The head, then (message id, "body", seq, author_role, author_id) part by part,
        # the author's parts encoded once per author (roles are text, so equal keys encode
        # alike).
        who = (author_role, author_id)
        author = self._authors.get(who)
        if author is None:
            author = self._authors[who] = crypto.associated_data(author_role, author_id)
        return b"".join(
            (self._aad_head, crypto.part(message_id), _BODY_PART, crypto.part(seq), author)
        )

    def _attachment_aad(self, attachment: AttachmentPlace, field: str) -> bytes:
        if self.format is ContentFormat.PLACE:
            return self._aad_head + crypto.associated_data(attachment.id, field)
        return self._aad_head + crypto.associated_data(attachment.id, field, attachment.message_id)

    def _subject_aad(self) -> bytes:
        conversation_id = self._conversation_id
        return crypto.associated_data(_SUBJECT_LABEL, conversation_id, conversation_id, "subject")

    # -- seal and open ------------------------------------------------------------------------

    def seal_body(self, message: MessagePlace, text: str) -> bytes:
        aad = self._body_aad(message.id, message.seq, message.author_role, message.author_id)
        return self._sealing.seal(text.encode("utf-8"), aad)

    def open_body(self, message: MessagePlace, sealed: bytes) -> str:
        return self.open_body_at(
            message.id, message.seq, message.author_role, message.author_id, sealed
        )

    def open_body_at(
        self,
        message_id: uuid.UUID,
        seq: int,
        author_role: str,
        author_id: uuid.UUID,
        sealed: bytes,
    ) -> str:
        """``open_body`` of a message given by its fields (a page's row, unpacked)."""
        aad = self._body_aad(message_id, seq, author_role, author_id)
        return self._open(sealed, aad).decode("utf-8")

    def seal_attachment(self, attachment: AttachmentPlace, field: str, data: bytes) -> bytes:
        """``field`` is ``data``, ``filename`` or ``content_type``."""
        return self._sealing.seal(data, self._attachment_aad(attachment, field))

    def open_attachment(self, attachment: AttachmentPlace, field: str, sealed: bytes) -> bytes:
        return self._open(sealed, self._attachment_aad(attachment, field))

    def open_attachment_text(self, attachment: AttachmentPlace, field: str, sealed: bytes) -> str:
        return self.open_attachment(attachment, field, sealed).decode("utf-8")

    def seal_subject(self, text: str) -> bytes:
        return self._sealing.seal(text.encode("utf-8"), self._subject_aad())

    def open_subject(self, sealed: bytes) -> str:
        return self._open(sealed, self._subject_aad()).decode("utf-8")

    def _draft_aad(self, author_id: uuid.UUID) -> bytes:
        return crypto.associated_data(_DRAFT_LABEL, self._conversation_id, author_id)

    def seal_draft(self, author_id: uuid.UUID, text: str) -> bytes:
        return self._sealing.seal(text.encode("utf-8"), self._draft_aad(author_id))

    def open_draft(self, author_id: uuid.UUID, sealed: bytes) -> str:
        return self._open(sealed, self._draft_aad(author_id)).decode("utf-8")
