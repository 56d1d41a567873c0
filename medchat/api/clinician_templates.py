"""``/api/v1/clinician/templates``: a doctor's canned replies, sealed for their session only.

Thin over ``ReplyTemplateService`` (who sees them, how they are sealed, what is audited).
Routes of the clinician blueprint, in a module of their own.
"""

from __future__ import annotations

import uuid
from typing import Any

from access_control.permissions import Permission
from medchat.api.clinician import bp
from medchat.schemas.templates import TemplateListSchema, TemplateSchema, TemplateWriteSchema
from medchat.services.reply_templates import ReplyTemplateService, TemplateView
from medchat.web.context import db_session, runtime
from medchat.web.guard import requires, signed_in


def _service() -> ReplyTemplateService:
    return ReplyTemplateService(db_session(), runtime())


@bp.route("/templates", methods=["GET"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.response(200, TemplateListSchema)
def templates() -> dict[str, Any]:
    """The caller's canned replies, by title."""
    return {"items": _service().list(signed_in())}


@bp.route("/templates", methods=["POST"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.arguments(TemplateWriteSchema)
@bp.response(201, TemplateSchema)
def create_template(data: dict[str, Any]) -> TemplateView:
    """Add a canned reply (409 past 100)."""
    return _service().create(signed_in(), data["title"], data["body"])


@bp.route("/templates/<uuid:template_id>", methods=["GET"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.response(200, TemplateSchema)
def template(template_id: uuid.UUID) -> TemplateView:
    """One of the caller's canned replies (404 for anyone else's)."""
    return _service().get(signed_in(), template_id)


@bp.route("/templates/<uuid:template_id>", methods=["PUT"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.arguments(TemplateWriteSchema)
@bp.response(200, TemplateSchema)
def update_template(data: dict[str, Any], template_id: uuid.UUID) -> TemplateView:
    """Replace a canned reply's title and body."""
    return _service().update(signed_in(), template_id, data["title"], data["body"])


@bp.route("/templates/<uuid:template_id>", methods=["DELETE"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
@bp.response(204)
def delete_template(template_id: uuid.UUID) -> None:
    """Delete a canned reply."""
    _service().delete(signed_in(), template_id)
