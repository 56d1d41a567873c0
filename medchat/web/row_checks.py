"""Views whose first statement after the token check is their conversation's row check.

``checks_conversation_row`` marks one (directly under ``@bp.route``); for a bearer request to
it, the request loader reads the token and the row check of the conversation the URL names
in one statement (``medchat.services.request_checks``). Mark only a view whose service runs
``ConversationAccess.check`` for the URL's ``conversation_id`` before it writes anything
(``for_update`` as that check's): a mark anywhere else costs a read that nothing uses, and
tests/api/test_request_checks.py holds every marked view to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, Request

F = TypeVar("F", bound=Callable[..., object])
ROW_CHECK_ATTRIBUTE = "conversation_row_check"


def checks_conversation_row(*, for_update: bool) -> Callable[[F], F]:
    def mark(view: F) -> F:
        setattr(view, ROW_CHECK_ATTRIBUTE, for_update)
        return view

    return mark


def row_check_of(app: Flask, request: Request) -> tuple[uuid.UUID, bool] | None:
    """The conversation a marked view will check, and whether it locks the row; None for
    any other request."""
    view = app.view_functions.get(request.endpoint or "")
    for_update = getattr(view, ROW_CHECK_ATTRIBUTE, None)
    conversation_id = (request.view_args or {}).get("conversation_id")
    if not isinstance(for_update, bool) or not isinstance(conversation_id, uuid.UUID):
        return None
    return conversation_id, for_update
