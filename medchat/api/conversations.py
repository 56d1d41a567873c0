"""``/api/v1/conversations``: a member's questions and the answers (API.md "Member").

Thin over ``MemberConversationService``: each view validates with a schema, calls one service
method and serialises. Someone else's conversation is a 404, never a 403. Creating POSTs
honour ``Idempotency-Key``; a replayed answer carries ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from flask import Response, jsonify
from flask_smorest import Blueprint

from access_control.guard import requires, signed_in
from access_control.permissions import Permission
from medchat.api.pagination import (
    decode_activity_cursor,
    decode_seq_cursor,
    encode_activity_cursor,
    encode_cursor,
)
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
    message_json,
)
from medchat.services.conversation_pages import ActivityPosition, Page
from medchat.services.deletion import DeletionService
from medchat.services.idempotency import Created
from medchat.services.member_conversations import MemberConversationService
from medchat.web import db_session, runtime

bp = Blueprint(
    "conversations", __name__, url_prefix="/api/v1/conversations", description="Conversations"
)

REPLAYED_HEADER = "Idempotent-Replayed"


def _service() -> MemberConversationService:
    return MemberConversationService(db_session(), runtime())


def created(outcome: Created[Any]) -> tuple[Any, int, dict[str, str]]:
    """201 with the resource; a replay says so in a header (the body is the same)."""
    headers = {REPLAYED_HEADER: "true"} if outcome.replayed else {}
    return outcome.result, 201, headers


def activity_page(page: Page) -> dict[str, Any]:
    """A conversation page with its opaque cursor (the last one's activity time and id)."""
    position = cast(ActivityPosition | None, page.next_cursor)
    return {"items": page.items, "next_cursor": encode_activity_cursor(position)}


def created_message(outcome: Created[Any]) -> tuple[Response, int, dict[str, str]]:
    """``created`` for a message, shaped as ``MessageSchema`` dumps it (``message_json``)."""
    response, status, headers = created(outcome)
    return jsonify(message_json(response)), status, headers


def message_page(page: Page) -> Response:
    """A message page with its opaque cursor (the sequence number the page ended on).

    Shaped as ``MessagePageSchema`` dumps it, without marshmallow (``message_json``): a view
    returning a response is passed through by flask-smorest, which still documents the
    schema.
    """
    cursor = None if page.next_cursor is None else encode_cursor(page.next_cursor)
    return jsonify({"items": [message_json(m) for m in page.items], "next_cursor": cursor})


@bp.route("", methods=["POST"])
@requires(Permission.MEMBER_CONVERSATIONS)
@bp.arguments(ConversationCreateSchema)
@bp.arguments(IdempotencyHeaderSchema, location="headers")
@bp.response(201, ConversationCreatedSchema)
def start(data: dict[str, Any], headers: dict[str, Any]) -> Any:
    """Ask a question: a new conversation with its first message (needs consent)."""
    return created(
        _service().start(
            signed_in(),
            subject=data["subject"],
            body=data["body"],
            idempotency_key=headers["idempotency_key"],
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
@requires(Permission.MEMBER_CONVERSATIONS)
@bp.arguments(MessagePageArgsSchema, location="query")
@bp.response(200, MessagePageSchema)
def messages(args: dict[str, Any], conversation_id: uuid.UUID) -> Response:
    """Messages, newest first (``?order=asc`` pages from the oldest)."""
    return message_page(
        _service().messages(
            signed_in(),
            conversation_id,
            limit=args["limit"],
            cursor=decode_seq_cursor(args["cursor"]),
            ascending=args["order"] == "asc",
        )
    )


@bp.route("/<uuid:conversation_id>/messages", methods=["POST"])
@requires(Permission.MEMBER_CONVERSATIONS)
@bp.arguments(MessageCreateSchema)
@bp.arguments(IdempotencyHeaderSchema, location="headers")
@bp.response(201, MessageSchema)
def send(data: dict[str, Any], headers: dict[str, Any], conversation_id: uuid.UUID) -> Any:
    """Add a message; 409 when the conversation is closed, 403 once consent is withdrawn."""
    return created_message(
        _service().send(
            signed_in(),
            conversation_id,
            data["body"],
            idempotency_key=headers["idempotency_key"],
        )
    )
