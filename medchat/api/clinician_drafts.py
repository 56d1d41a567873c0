"""``/api/v1/clinician/conversations/{id}/draft``: a doctor's unsent answer, sealed like content.

Thin over ``DraftService`` (what a draft is, who sees it, when it ends). Routes of the
clinician blueprint, in a module of their own.
"""

from __future__ import annotations

import uuid
from typing import Any

from access_control.permissions import Permission
from medchat.api.clinician import bp
from medchat.schemas.drafts import DraftSaveSchema, DraftSchema
from medchat.services.drafts import DraftService, DraftView
from medchat.web.context import db_session, runtime
from medchat.web.guard import requires, signed_in


def _service() -> DraftService:
    return DraftService(db_session(), runtime())


@bp.route("/conversations/<uuid:conversation_id>/draft", methods=["GET"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.response(200, DraftSchema)
def draft(conversation_id: uuid.UUID) -> DraftView:
    """The caller's draft answer (404 when none); audited as a content read."""
    return _service().get(signed_in(), conversation_id)


@bp.route("/conversations/<uuid:conversation_id>/draft", methods=["PUT"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.arguments(DraftSaveSchema)
@bp.response(200, DraftSchema)
def save_draft(data: dict[str, Any], conversation_id: uuid.UUID) -> DraftView:
    """Save (replace) the caller's draft; 409 when the conversation is closed."""
    return _service().save(signed_in(), conversation_id, data["body"])


@bp.route("/conversations/<uuid:conversation_id>/draft", methods=["DELETE"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.response(204)
def discard_draft(conversation_id: uuid.UUID) -> None:
    """Discard the caller's draft (404 when none). Sending an answer discards it too."""
    _service().discard(signed_in(), conversation_id)
