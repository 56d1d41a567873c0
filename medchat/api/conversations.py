"""``/api/v1/conversations``: a member's questions and the answers (API.md "Member").

Thin over ``MemberConversationService``: each view validates with a schema, calls one service
method and serialises. Someone else's conversation is a 404, never a 403. Creating POSTs
honour ``Idempotency-Key``; a replayed answer carries ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response

from access_control.permissions import Permission
from medchat.api.blueprint import Blueprint
from medchat.schemas.common import ActivityPageArgsSchema, StatusSchema
from medchat.schemas.conversations import (
    ConversationCreatedSchema,
    ConversationCreateSchema,
    ConversationPageSchema,
    ConversationSchema,
    IdempotencyHeaderSchema,
    MessageCreateSchema,
    MessagePageArgsSchema,
    MessagePageSchema,
    MessageSchema,
)
from medchat.schemas.cursors import (
    decode_activity_cursor,
)
from medchat.services.deletion import DeletionService
from medchat.services.member_conversations import MemberConversationService
from medchat.web.context import db_session, runtime
from medchat.web.guard import requires, signed_in
from medchat.web.responses import activity_page, created, messages_of, sent_by
from medchat.web.row_checks import checks_conversation_row

bp = Blueprint(
    "conversations", __name__, url_prefix="/api/v1/conversations", description="Conversations"
)


def _service() -> MemberConversationService:
    return MemberConversationService(db_session(), runtime())


@bp.route("", methods=["POST"])
@requires(Permission.MEMBER_CONVERSATIONS)
@bp.arguments(ConversationCreateSchema)
@bp.arguments(IdempotencyHeaderSchema, location="headers")
@bp.response(201, ConversationCreatedSchema)
def start(data: dict[str, Any], headers: dict[str, Any]) -> Any:
    """Ask a question: a new conversation with its first message (needs consent and the
    acknowledgement of the emergency notice; ``urgent`` puts it first in the queue)."""
    return created(
        _service().start(
            signed_in(),
            subject=data["subject"],
            body=data["body"],
            idempotency_key=headers["idempotency_key"],
            urgent=data["urgent"],
            notice_version=data["emergency_notice"],
        )
    )


@bp.route("", methods=["GET"])
@requires(Permission.MEMBER_CONVERSATIONS)
@bp.arguments(ActivityPageArgsSchema, location="query")
@bp.response(200, ConversationPageSchema)
def list_own(args: dict[str, Any]) -> dict[str, Any]:
    """The member's conversations, newest activity first."""
    return activity_page(
        _service().list_own(
            signed_in(), limit=args["limit"], after=decode_activity_cursor(args["cursor"])
        )
    )


@bp.route("/<uuid:conversation_id>", methods=["GET"])
@requires(Permission.MEMBER_CONVERSATIONS)
@bp.response(200, ConversationSchema)
def conversation(conversation_id: uuid.UUID) -> Any:
    """One of the member's conversations."""
    return _service().conversation(signed_in(), conversation_id)


@bp.route("/<uuid:conversation_id>", methods=["DELETE"])
@requires(Permission.MEMBER_CONVERSATIONS)
@bp.response(202, StatusSchema)
def delete(conversation_id: uuid.UUID) -> dict[str, str]:
    """Delete: gone from every member and clinician view at once, kept as a sealed archive
    record (only compliance can open it, with four eyes)."""
    return {
        "status": DeletionService(db_session(), runtime()).delete_own(signed_in(), conversation_id)
    }


@bp.route("/<uuid:conversation_id>/messages", methods=["GET"])
@checks_conversation_row(for_update=False)
@requires(Permission.MEMBER_CONVERSATIONS)
@bp.arguments(MessagePageArgsSchema, location="query")
@bp.response(200, MessagePageSchema)
def messages(args: dict[str, Any], conversation_id: uuid.UUID) -> Response:
    """Messages, newest first (``?order=asc`` pages from the oldest)."""
    return messages_of(_service(), conversation_id, args)


@bp.route("/<uuid:conversation_id>/messages", methods=["POST"])
@checks_conversation_row(for_update=True)
@requires(Permission.MEMBER_CONVERSATIONS)
@bp.arguments(MessageCreateSchema)
@bp.arguments(IdempotencyHeaderSchema, location="headers")
@bp.response(201, MessageSchema)
def send(data: dict[str, Any], headers: dict[str, Any], conversation_id: uuid.UUID) -> Any:
    """Add a message; 409 when the conversation is closed, 403 once consent is withdrawn."""
    return sent_by(_service(), conversation_id, data, headers)


@bp.route("/<uuid:conversation_id>/read", methods=["POST"])
@requires(Permission.MEMBER_CONVERSATIONS)
@bp.response(204)
def mark_read(conversation_id: uuid.UUID) -> None:
    """Mark every message so far as read (idempotent); the doctors' replies stop counting
    in ``unread_count``."""
    _service().mark_read(signed_in(), conversation_id)
