"""Bodies of the attachment endpoints (API.md "Member": attachments)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from medchat.schemas.common import StrictSchema


class AttachmentUploadSchema(StrictSchema):
    """``multipart/form-data`` with one file part named ``file``.

    The part's own ``Content-Type`` and file name are claims: the type is sniffed from the
    bytes, and a label naming another type is refused (415).
    """

    file = fields.Raw(
        required=True,
        metadata={
            "type": "string",
            "format": "binary",
            "description": "PDF, PNG, JPEG or HEIC; at most the configured size (10 MiB) "
            "and, for images, pixels (50 MP). Its metadata (EXIF, XMP, PDF document "
            "information) is removed before it is stored.",
        },
    )


class AttachmentSchema(ma.Schema):
    id = fields.UUID(required=True)
    filename = fields.String(
        required=True,
        metadata={
            "description": "The member's own name for the file, to the member; to a clinician "
            "a neutral one, its kind and order in the conversation (photo-2.jpg, document-1.pdf)."
        },
    )
    content_type = fields.String(required=True, metadata={"description": "sniffed, not declared"})
    size = fields.Integer(
        required=True, metadata={"description": "bytes, as stored: without the file's metadata"}
    )
