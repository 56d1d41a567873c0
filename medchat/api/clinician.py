"""``/api/v1/clinician``: the queue and the conversations, as a doctor sees them.

Thin over ``ClinicianConversationService``: the patient appears only as the four-field
object of ``medchat.services.patient_view``, every read of content is audited there, and a session
without the physician role key gets 403 ``role_key_required``. The staff-network rule is
applied to this prefix by the app before any view runs.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response

from access_control.permissions import Permission
from medchat.api.blueprint import Blueprint
from medchat.schemas.clinician import (
    CasePageSchema,
    CaseSchema,
    ClaimSchema,
    ClosedSchema,
    HandoffSchema,
    QueueArgsSchema,
)
from medchat.schemas.conversations import (
    IdempotencyHeaderSchema,
    MessageCreateSchema,
    MessagePageArgsSchema,
    MessagePageSchema,
    MessageSchema,
)
from medchat.schemas.cursors import decode_activity_cursor
from medchat.services.clinician_conversations import ClinicianConversationService
from medchat.web.context import db_session, runtime
from medchat.web.guard import requires, signed_in
from medchat.web.responses import activity_page, messages_of, sent_by
from medchat.web.row_checks import checks_conversation_row

bp = Blueprint("clinician", __name__, url_prefix="/api/v1/clinician", description="Clinicians")


def _service() -> ClinicianConversationService:
    return ClinicianConversationService(db_session(), runtime())


@bp.route("/queue", methods=["GET"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.arguments(QueueArgsSchema, location="query")
@bp.response(200, CasePageSchema)
def queue(args: dict[str, Any]) -> dict[str, Any]:
    """Conversations by status: ``open`` oldest waiting first, the others newest first;
    ``claim`` filters on who holds them."""
    return activity_page(
        _service().queue(
            signed_in(),
            status=args["status"],
            limit=args["limit"],
            after=decode_activity_cursor(args["cursor"]),
            claim=args["claim"],
        )
    )


@bp.route("/conversations/<uuid:conversation_id>", methods=["GET"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.response(200, CaseSchema)
def conversation(conversation_id: uuid.UUID) -> Any:
    """One conversation with its patient object."""
    return _service().case(signed_in(), conversation_id)


@bp.route("/conversations/<uuid:conversation_id>/messages", methods=["GET"])
@checks_conversation_row(for_update=False)
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.arguments(MessagePageArgsSchema, location="query")
@bp.response(200, MessagePageSchema)
def messages(args: dict[str, Any], conversation_id: uuid.UUID) -> Response:
    """Messages, newest first (``?order=asc`` pages from the oldest)."""
    return messages_of(_service(), conversation_id, args)


@bp.route("/conversations/<uuid:conversation_id>/messages", methods=["POST"])
@checks_conversation_row(for_update=True)
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.arguments(MessageCreateSchema)
@bp.arguments(IdempotencyHeaderSchema, location="headers")
@bp.response(201, MessageSchema)
def reply(data: dict[str, Any], headers: dict[str, Any], conversation_id: uuid.UUID) -> Any:
    """Answer (needs the caller's live claim, which it renews); the conversation becomes
    ``answered`` (409 when closed)."""
    return sent_by(_service(), conversation_id, data, headers)


@bp.route("/conversations/<uuid:conversation_id>/close", methods=["POST"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.response(200, ClosedSchema)
def close(conversation_id: uuid.UUID) -> dict[str, str]:
    """Close the conversation: no more messages from either side."""
    return {"status": _service().close(signed_in(), conversation_id)}


@bp.route("/conversations/<uuid:conversation_id>/claim", methods=["POST"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.response(200, ClaimSchema)
def claim(conversation_id: uuid.UUID) -> Any:
    """Claim the question (colleagues see it taken) or renew one's own claim, for
    ``MEDCHAT_CLAIM_MINUTES``; then it returns to the queue."""
    return _service().claim(signed_in(), conversation_id)


@bp.route("/conversations/<uuid:conversation_id>/claim", methods=["DELETE"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.response(204)
def release_claim(conversation_id: uuid.UUID) -> None:
    """Release one's own claim: the question is back in the queue."""
    _service().release(signed_in(), conversation_id)


@bp.route("/conversations/<uuid:conversation_id>/claim/handoff", methods=["POST"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.arguments(HandoffSchema)
@bp.response(200, ClaimSchema)
def hand_over(data: dict[str, Any], conversation_id: uuid.UUID) -> Any:
    """Hand one's own claim to a named colleague, with a reason code (never free text)."""
    return _service().hand_over(signed_in(), conversation_id, data["to"], data["reason"])


@bp.route("/conversations/<uuid:conversation_id>/read", methods=["POST"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.response(204)
def mark_read(conversation_id: uuid.UUID) -> None:
    """Mark every message so far as read by the caller (idempotent; audited as a read)."""
    _service().mark_read(signed_in(), conversation_id)


# Routes of this blueprint kept in modules of their own (the draft answer, canned replies).
from medchat.api import clinician_drafts, clinician_templates  # noqa: E402, F401
