"""Answers the API and the console shape alike: created resources (with the idempotent-replay
header), message and conversation pages with their opaque cursors, the message routes members
and clinicians share (``messages_of``, ``sent_by``), and attachment downloads (always a
download, typed by content, ``nosniff``, never cached)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, jsonify

from medchat.files.names import content_disposition
from medchat.schemas.conversations import message_json
from medchat.schemas.cursors import decode_seq_cursor, encode_activity_cursor, encode_cursor
from medchat.services.attachments import AttachmentFile
from medchat.services.conversation_front import ConversationFront
from medchat.services.conversation_pages import ActivityPosition, Page
from medchat.services.idempotency import Created
from medchat.web.guard import signed_in

REPLAYED_HEADER = "Idempotent-Replayed"


def created(outcome: Created[Any]) -> tuple[Any, int, dict[str, str]]:
    """201 with the resource; a replay says so in a header (the body is the same)."""
    headers = {REPLAYED_HEADER: "true"} if outcome.replayed else {}
    return outcome.result, 201, headers


def activity_page(page: Page[Any, ActivityPosition]) -> dict[str, Any]:
    """A conversation page with its opaque cursor (the last one's activity time and id)."""
    return {"items": page.items, "next_cursor": encode_activity_cursor(page.next_cursor)}


def created_message(outcome: Created[Any]) -> tuple[Response, int, dict[str, str]]:
    """``created`` for a message, shaped as ``MessageSchema`` dumps it (``message_json``)."""
    response, status, headers = created(outcome)
    return jsonify(message_json(response)), status, headers


def message_page(page: Page[Any, int]) -> Response:
    """A message page with its opaque cursor (the sequence number the page ended on).

    Shaped as ``MessagePageSchema`` dumps it, without marshmallow (``message_json``): a view
    returning a response is passed through by flask-smorest, which still documents the
    schema.
    """
    cursor = None if page.next_cursor is None else encode_cursor(page.next_cursor)
    return jsonify({"items": [message_json(m) for m in page.items], "next_cursor": cursor})


def messages_of(front: ConversationFront, conversation_id: uuid.UUID, args: Any) -> Response:
    """``GET .../messages`` of either audience (``MessagePageArgsSchema`` arguments): the
    page ``front`` gives the signed-in principal, newest first unless ``order=asc``."""
    return message_page(
        front.messages(
            signed_in(),
            conversation_id,
            limit=args["limit"],
            cursor=decode_seq_cursor(args["cursor"]),
            ascending=args["order"] == "asc",
        )
    )


def sent_by(
    front: ConversationFront, conversation_id: uuid.UUID, data: Any, headers: Any
) -> tuple[Response, int, dict[str, str]]:
    """``POST .../messages`` of either audience (``MessageCreateSchema`` body and
    ``IdempotencyHeaderSchema`` headers): the signed-in principal's message, 201."""
    return created_message(
        front.send(
            signed_in(), conversation_id, data["body"], idempotency_key=headers["idempotency_key"]
        )
    )


def download_response(opened: AttachmentFile) -> Response:
    """The decrypted file as a download, never rendered (the console uses it too)."""
    response = Response(opened.data, mimetype=opened.content_type)
    response.headers["Content-Disposition"] = content_disposition(opened.filename)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response
