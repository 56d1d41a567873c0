"""Attachments over HTTP: multipart in, sealed by the service; bytes out, never rendered.

One route per audience, as each route declares one permission: members upload to and
download from their own conversations, clinicians (physician role key in their session) use
the ``/clinician`` routes. Downloads are always ``Content-Disposition: attachment`` with the
sniffed type and ``nosniff``, so a browser saves the file instead of interpreting it.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response
from werkzeug.datastructures import FileStorage

from access_control.permissions import Permission
from medchat.api.blueprint import Blueprint
from medchat.schemas.attachments import AttachmentSchema, AttachmentUploadSchema
from medchat.schemas.conversations import IdempotencyHeaderSchema
from medchat.services.attachments import AttachmentService, Upload
from medchat.web.context import db_session, runtime
from medchat.web.guard import requires, signed_in
from medchat.web.responses import created, download_response

bp = Blueprint("attachments", __name__, url_prefix="/api/v1", description="Attachments")

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_DOWNLOAD_DOC: dict[str, Any] = {
    "responses": {
        "200": {
            "description": "The file's bytes, typed by content, as a download.",
            "content": {
                media_type: _BINARY
                for media_type in ("application/pdf", "image/png", "image/jpeg", "image/heic")
            },
        }
    }
}


def _service() -> AttachmentService:
    return AttachmentService(db_session(), runtime())


def _upload_into(
    conversation_id: uuid.UUID, files: dict[str, FileStorage], headers: dict[str, Any]
) -> Any:
    # The stream is the in-memory buffer of ``medchat.web.uploads``, already bounded.
    part = files["file"]
    upload = Upload(filename=part.filename, declared_type=part.mimetype, data=part.stream.read())
    return created(
        _service().upload(
            signed_in(), conversation_id, upload, idempotency_key=headers["idempotency_key"]
        )
    )


@bp.route("/conversations/<uuid:conversation_id>/attachments", methods=["POST"])
@requires(Permission.MEMBER_CONVERSATIONS)
@bp.arguments(AttachmentUploadSchema, location="files")
@bp.arguments(IdempotencyHeaderSchema, location="headers")
@bp.response(201, AttachmentSchema)
def upload_attachment(
    files: dict[str, FileStorage], headers: dict[str, Any], conversation_id: uuid.UUID
) -> Any:
    """Send a file into one's own conversation, as a message of its own."""
    return _upload_into(conversation_id, files, headers)


@bp.route("/attachments/<uuid:attachment_id>", methods=["GET"])
@requires(Permission.MEMBER_CONVERSATIONS)
@bp.doc(**_DOWNLOAD_DOC)
def download_attachment(attachment_id: uuid.UUID) -> Response:
    """Download a file from one's own conversation."""
    return download_response(_service().download(signed_in(), attachment_id))


@bp.route("/clinician/conversations/<uuid:conversation_id>/attachments", methods=["POST"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.arguments(AttachmentUploadSchema, location="files")
@bp.arguments(IdempotencyHeaderSchema, location="headers")
@bp.response(201, AttachmentSchema)
def upload_clinician_attachment(
    files: dict[str, FileStorage], headers: dict[str, Any], conversation_id: uuid.UUID
) -> Any:
    """Send a file to the patient, as a clinician's message."""
    return _upload_into(conversation_id, files, headers)


@bp.route("/clinician/attachments/<uuid:attachment_id>", methods=["GET"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.doc(**_DOWNLOAD_DOC)
def download_clinician_attachment(attachment_id: uuid.UUID) -> Response:
    """Download a file of a conversation (audited as a content read)."""
    return download_response(_service().download(signed_in(), attachment_id))
