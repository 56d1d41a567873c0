"""``/api/v1/compliance``: the sealed archive for compliance officers (API.md "Compliance"),
and ``/api/v1/archive/public-key``, the published key anyone verifies records with.

Thin over ``ArchiveRecordService`` and ``RetrievalService``: the staff-network rule and the
two-factor session apply to every ``/api/v1/compliance`` route (``http_security``, the
permission check); the services decide who may open what (four eyes) and audit each step.
The member's address is a POST body field, never part of a URL.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response

from access_control.permissions import Permission
from medchat.api.blueprint import Blueprint
from medchat.archive.bundle import bundle_bytes, signing_key_document
from medchat.schemas.common import PageArgsSchema, StatusSchema
from medchat.schemas.compliance import (
    ArchivedConversationSchema,
    ArchiveRecordPageSchema,
    ArchiveSearchSchema,
    LedgerReportSchema,
    PublicKeySchema,
    RetrievalCreatedSchema,
    RetrievalCreateSchema,
    RetrievalListArgsSchema,
    RetrievalPageSchema,
    RetrievalSchema,
)
from medchat.schemas.cursors import (
    decode_activity_cursor,
    decode_seq_cursor,
    encode_activity_cursor,
    encode_cursor,
)
from medchat.services.archive_records import ArchiveRecordService
from medchat.services.retrieval import RetrievalService
from medchat.web.context import db_session, runtime
from medchat.web.guard import requires, signed_in
from medchat.web.responses import download_response

bp = Blueprint("compliance", __name__, url_prefix="/api/v1", description="Sealed archive")


def _records() -> ArchiveRecordService:
    return ArchiveRecordService(db_session(), runtime())


def _retrievals() -> RetrievalService:
    return RetrievalService(db_session(), runtime())


@bp.route("/archive/public-key", methods=["GET"])
@requires(Permission.PUBLIC)
@bp.response(200, PublicKeySchema)
def public_key() -> dict[str, str]:
    """The Ed25519 key that signs ledger records and exports: verify them offline with it."""
    return signing_key_document(runtime().archive_signer.public_key)


@bp.route("/compliance/archive/search", methods=["POST"])
@requires(Permission.COMPLIANCE_ARCHIVE)
@bp.arguments(ArchiveSearchSchema)
@bp.arguments(PageArgsSchema, location="query")
@bp.response(200, ArchiveRecordPageSchema)
def search(data: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """Sealed records of a member (by e-mail address), newest first: metadata only."""
    page = _records().search(
        signed_in(),
        data["member_email"],
        limit=args["limit"],
        before_seq=decode_seq_cursor(args["cursor"]),
    )
    cursor = None if page.next_cursor is None else encode_cursor(page.next_cursor)
    return {"items": page.items, "next_cursor": cursor}


@bp.route("/compliance/archive/verify", methods=["GET"])
@requires(Permission.COMPLIANCE_ARCHIVE)
@bp.response(200, LedgerReportSchema)
def verify() -> dict[str, Any]:
    """Check every link, signature and content hash; name the first bad record."""
    return _records().verify(signed_in()).as_dict()


@bp.route("/compliance/archive/<uuid:record_id>/retrievals", methods=["POST"])
@requires(Permission.COMPLIANCE_ARCHIVE)
@bp.arguments(RetrievalCreateSchema)
@bp.response(201, RetrievalCreatedSchema)
def request_retrieval(data: dict[str, Any], record_id: uuid.UUID) -> Any:
    """Ask to open a sealed record; another officer must approve."""
    return _retrievals().request(signed_in(), record_id, data["justification"])


@bp.route("/compliance/retrievals", methods=["GET"])
@requires(Permission.COMPLIANCE_ARCHIVE)
@bp.arguments(RetrievalListArgsSchema, location="query")
@bp.response(200, RetrievalPageSchema)
def retrievals(args: dict[str, Any]) -> dict[str, Any]:
    """Requests awaiting approval (``?status=approved`` for the approved ones), newest first."""
    page = _retrievals().list_requests(
        signed_in(),
        status=args["status"],
        limit=args["limit"],
        before=decode_activity_cursor(args["cursor"]),
    )
    return {"items": page.items, "next_cursor": encode_activity_cursor(page.next_cursor)}


@bp.route("/compliance/retrievals/<uuid:retrieval_id>", methods=["GET"])
@requires(Permission.COMPLIANCE_ARCHIVE)
@bp.response(200, RetrievalSchema)
def retrieval(retrieval_id: uuid.UUID) -> Any:
    """One request with its justification, for the officer deciding on it."""
    return _retrievals().get(signed_in(), retrieval_id)


@bp.route("/compliance/retrievals/<uuid:retrieval_id>/approve", methods=["POST"])
@requires(Permission.COMPLIANCE_ARCHIVE)
@bp.response(200, StatusSchema)
def approve(retrieval_id: uuid.UUID) -> dict[str, str]:
    """Approve another officer's request (403 for one's own, 409 once approved)."""
    return {"status": _retrievals().approve(signed_in(), retrieval_id)}


@bp.route("/compliance/retrievals/<uuid:retrieval_id>/content", methods=["GET"])
@requires(Permission.COMPLIANCE_ARCHIVE)
@bp.response(200, ArchivedConversationSchema)
def content(retrieval_id: uuid.UUID) -> Any:
    """The decrypted conversation, for the requester once approved and until it expires."""
    return _retrievals().content(signed_in(), retrieval_id)


@bp.route(
    "/compliance/retrievals/<uuid:retrieval_id>/attachments/<uuid:attachment_id>",
    methods=["GET"],
)
@requires(Permission.COMPLIANCE_ARCHIVE)
def attachment(retrieval_id: uuid.UUID, attachment_id: uuid.UUID) -> Response:
    """One attachment of the opened conversation, as a download (same rule as content)."""
    return download_response(_retrievals().attachment(signed_in(), retrieval_id, attachment_id))


@bp.route("/compliance/retrievals/<uuid:retrieval_id>/export", methods=["GET"])
@requires(Permission.COMPLIANCE_ARCHIVE)
def export(retrieval_id: uuid.UUID) -> Response:
    """The conversation as a signed JSON bundle (``medchat archive verify-bundle`` checks it),
    served in its canonical bytes: the only spelling that verifies (``parse_bundle``)."""
    bundle = _retrievals().export(signed_in(), retrieval_id)
    response = Response(bundle_bytes(bundle), mimetype="application/json")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="medchat-archive-{retrieval_id}.json"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response
