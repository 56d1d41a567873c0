"""Attachments: files sent in a conversation, typed by their bytes, cleaned, sealed.

Each upload becomes its own message (empty body, written by the uploader's role) carrying one
attachment row. The file's bytes, its name and its sniffed type are sealed under the
conversation's DEK (``medchat.keys.sealing``) with the attachment id and (format 2) the id of the
message it belongs to in the associated data, so a ciphertext copied to another attachment, or
an attachment moved to another message, fails to open; only the size is stored in clear. Every
read and write starts with ``ConversationService.open``: the row check of ``ConversationAccess``
(404 for someone else's conversation, SECURITY-MODEL key hierarchy 12), then the DEK from the
caller's session keys. Uploads are audited with their size only (the name and the type are
content); a clinician's download is audited as a content read naming the member.

Before sealing, a file's metadata (EXIF, PDF document information, XMP ...) is removed
(``medchat.files.metadata``): what is stored, and what anyone downloads, is the cleaned
file. Only the member sees the names files were uploaded under; everyone else is given a
neutral one (``photo-2.jpg``: ``medchat.services.patient_view.sees_upload_names``), in answers and
in
the download's ``Content-Disposition`` alike.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from access_control.crypto import DecryptionFailed
from medchat import audit
from medchat.errors import KeyIntegrityFailure, NotFound, PayloadTooLarge
from medchat.files import metadata as attachment_metadata
from medchat.files import names as attachment_names
from medchat.files import types as attachment_types
from medchat.identity.principal import Principal
from medchat.keys.epochs import ConversationDeks
from medchat.keys.sealing import ContentKey
from medchat.models import Attachment, Conversation
from medchat.services.context import ServiceContext
from medchat.services.conversation_views import AttachmentView
from medchat.services.conversations import ConversationService
from medchat.services.idempotency import Created, IdempotencyService
from medchat.services.message_views import neutral_attachment_views, resealed_meanwhile
from medchat.services.patient_view import sees_upload_names

log = logging.getLogger("medchat.attachments")

INTEGRITY_FAILED = "An attachment failed its integrity check; it was not served."


@dataclass(frozen=True, repr=False)
class Upload:
    """A file as the client sent it: every field here is a claim until checked."""

    filename: str | None
    declared_type: str | None
    data: bytes


@dataclass(frozen=True, repr=False)
class AttachmentFile:
    """An opened attachment, ready to be sent back. ``repr`` shows no content."""

    id: uuid.UUID
    filename: str
    content_type: str
    data: bytes


class AttachmentService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime
        self.conversations = ConversationService(session, runtime)
        self.idempotency = IdempotencyService(session, runtime)

    def upload(
        self,
        actor: Principal,
        conversation_id: uuid.UUID,
        upload: Upload,
        *,
        idempotency_key: str | None = None,
    ) -> Created[AttachmentView]:
        """Seal ``upload`` into a new message of the conversation; return its metadata.

        Checks run as for a text message (``ConversationService.send``): ``NotFound`` (not
        the caller's conversation, whatever the key), then a retry with the same
        ``Idempotency-Key`` and file is replayed (``Conflict`` for another file), then
        ``Conflict`` (closed) and ``ConsentRequired`` (the member withdrew consent), then the
        file itself: ``PayloadTooLarge`` (over ``max_attachment_bytes``),
        ``UnsupportedMediaType`` (not an accepted type, or labelled as another one),
        ``ImageTooLarge`` (over ``max_image_pixels``) and ``UnreadableFile`` (its decoder
        cannot read it, so its metadata cannot be removed). Nothing is stored unless all pass.
        The answer names the file as the caller may see it (the module docstring).
        """
        # Locked as it is read, like a send: the body of the upload's message is sealed to
        # the sequence number read here, in the content format the row names now.
        conversation, dek = self.conversations.open(actor, conversation_id, for_update=True)
        attachment_id = uuid.uuid4()
        if idempotency_key is not None:
            first = self.idempotency.claim(
                actor,
                idempotency_key,
                upload_scope(conversation.id),
                _request_payload(upload),
                attachment_id,
            )
            if first is not None:
                return Created(self._stored_view(actor, conversation, dek, first), replayed=True)
        self.conversations.require_open(conversation)
        self.conversations.require_consent(actor, conversation)
        self.conversations.claims.require_for_answer(actor, conversation)
        # The HTTP layer already stops reading past the limit; this keeps the rule true for
        # callers that are not HTTP (console, CLI, tests).
        if len(upload.data) > self.runtime.settings.max_attachment_bytes:
            raise PayloadTooLarge
        uploaded_type = attachment_types.sniff(upload.data)
        base_name = attachment_names.clean_filename(upload.filename)
        attachment_types.check_label(uploaded_type, upload.declared_type, base_name)
        # The conversation row stays locked while the file is re-encoded: this delays only
        # other writes to this conversation, never a read.
        data = attachment_metadata.strip(
            upload.data, uploaded_type, max_pixels=self.runtime.settings.max_image_pixels
        )
        # Typed again from what is stored: a HEIF re-encoded by libheif may be HEIC now.
        media_type = attachment_types.sniff(data)
        size = len(data)
        filename = attachment_names.with_extension(base_name, media_type)

        message = self.conversations.append_message(conversation, dek, actor, "")
        row = Attachment(
            id=attachment_id,
            conversation_id=conversation.id,
            message_id=message.id,
            size=size,
            created_at=message.created_at,
        )
        key = ContentKey.for_conversation(dek, conversation)
        row.filename_ciphertext = key.seal_attachment(row, "filename", filename.encode("utf-8"))
        row.content_type_ciphertext = key.seal_attachment(
            row, "content_type", media_type.encode("utf-8")
        )
        row.data_ciphertext = key.seal_attachment(row, "data", data)
        self.session.add(row)
        self.session.flush()
        audit.record(
            self.session,
            "attachment.upload",
            # The conversation is the target, as for every content action, so the member's
            # access log can name it; the file's name and type are content and stay out.
            target_type="conversation",
            target_id=conversation.id,
            subject_id=conversation.member_id,
            details={"attachment_id": str(attachment_id), "size": size},
        )
        if not sees_upload_names(actor.role):
            return Created(self._neutral_view(conversation, dek, attachment_id))
        return Created(AttachmentView(attachment_id, filename, media_type, size))

    def download(self, actor: Principal, attachment_id: uuid.UUID) -> AttachmentFile:
        """The opened attachment, if ``actor`` may read its conversation.

        Raises ``NotFound`` for an unknown id and for someone else's attachment alike, and
        ``KeyIntegrityFailure`` (409 ``key_integrity_failed``) when a ciphertext does not open
        under this row's associated data: it was moved (to another attachment, message or
        conversation), altered or replaced in the database. That is tampering, not a client
        error, so it is refused, logged and audited, never served and never retried with
        another key.
        """
        row = self.session.get(Attachment, attachment_id)
        if row is None:
            raise NotFound
        conversation, dek = self.conversations.open(actor, row.conversation_id)
        opened = self._open(conversation, dek, row)
        self.conversations.audit_content_read(actor, conversation, "read.attachment")
        if sees_upload_names(actor.role):
            return opened
        name = self._neutral_view(conversation, dek, row.id).filename
        return AttachmentFile(opened.id, name, opened.content_type, opened.data)

    # -- internals ---------------------------------------------------------------------------

    def _stored_view(
        self,
        actor: Principal,
        conversation: Conversation,
        dek: ConversationDeks,
        attachment_id: uuid.UUID,
    ) -> AttachmentView:
        """The metadata of an attachment made by an earlier request (idempotent replay)."""
        row = self.session.get(Attachment, attachment_id)
        if row is None or row.conversation_id != conversation.id:
            raise NotFound
        opened = self._open(conversation, dek, row, data=False)
        if not sees_upload_names(actor.role):
            return self._neutral_view(conversation, dek, row.id)
        return AttachmentView(row.id, opened.filename, opened.content_type, row.size)

    def _neutral_view(
        self, conversation: Conversation, dek: ConversationDeks, attachment_id: uuid.UUID
    ) -> AttachmentView:
        """The attachment as a reader who may not see its uploaded name is shown it."""
        key = ContentKey.for_conversation(dek, conversation)
        try:
            with resealed_meanwhile(self.session, key, conversation):
                views = neutral_attachment_views(self.session, key, conversation.id)
        except DecryptionFailed as exc:
            raise self._integrity_failure(conversation, attachment_id) from exc
        for _message_id, view in views:
            if view.id == attachment_id:
                return view
        raise NotFound

    def _open(
        self,
        conversation: Conversation,
        dek: ConversationDeks,
        row: Attachment,
        *,
        data: bool = True,
    ) -> AttachmentFile:
        """Open the row's sealed fields (the bytes only when ``data``), refusing tampering."""
        key = ContentKey.for_conversation(dek, conversation)
        try:
            with resealed_meanwhile(self.session, key, conversation):
                filename = key.open_attachment_text(row, "filename", row.filename_ciphertext)
                content_type = key.open_attachment_text(
                    row, "content_type", row.content_type_ciphertext
                )
                content = key.open_attachment(row, "data", row.data_ciphertext) if data else b""
        except DecryptionFailed as exc:
            raise self._integrity_failure(conversation, row.id) from exc
        return AttachmentFile(row.id, filename, content_type, content)

    def _integrity_failure(
        self, conversation: Conversation, attachment_id: uuid.UUID
    ) -> KeyIntegrityFailure:
        """Log and audit (after the rollback) a ciphertext that did not open under its row."""
        log.error("attachment %s failed to decrypt under its own row binding", attachment_id)
        audit.record_on_rollback(
            self.session,
            "attachment.integrity_failed",
            outcome="failed",
            target_type="conversation",
            target_id=conversation.id,
            subject_id=conversation.member_id,
            details={"attachment_id": str(attachment_id)},
        )
        return KeyIntegrityFailure(INTEGRITY_FAILED)


def upload_scope(conversation_id: uuid.UUID) -> str:
    """A key used for an upload in one conversation cannot replay elsewhere or as a message."""
    return f"attachment.upload:{conversation_id}"


def _request_payload(upload: Upload) -> dict[str, str]:
    # What makes a retry "the same request". The file enters as its SHA-256, which only feeds
    # the keyed MAC of ``IdempotencyService``: neither is stored, so a dump tests no guesses.
    return {
        "filename": upload.filename or "",
        "declared_type": upload.declared_type or "",
        "sha256": hashlib.sha256(upload.data).hexdigest(),
    }
