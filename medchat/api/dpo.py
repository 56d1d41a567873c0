"""``/api/v1/dpo``: the data protection officer acts for a member on a mailed request.

Thin over ``DpoService`` (docs/security.md, "The data protection officer"): staff rules apply
(the staff networks, a two-factor session), the member is named by address in the body, each
act carries the request's ticket, and no answer carries content or a profile value.
"""

from __future__ import annotations

from typing import Any

from access_control.permissions import Permission
from medchat.api.blueprint import Blueprint
from medchat.schemas.dpo import (
    DpoDoneSchema,
    DpoRectificationDoneSchema,
    DpoRectificationSchema,
    DpoRequestSchema,
    DpoRestrictionDoneSchema,
    DpoRestrictionSchema,
)
from medchat.services.dpo import DpoService
from medchat.web.context import db_session, runtime
from medchat.web.guard import requires, signed_in

bp = Blueprint("dpo", __name__, url_prefix="/api/v1/dpo", description="The data protection officer")


def _service() -> DpoService:
    return DpoService(db_session(), runtime())


@bp.route("/export", methods=["POST"])
@requires(Permission.DPO_REQUESTS)
@bp.arguments(DpoRequestSchema)
@bp.response(202, DpoDoneSchema)
def export(data: dict[str, Any]) -> dict[str, str]:
    """Deliver the member's export to the member: they are mailed that it waits in the app
    (no content by mail, nothing to the officer)."""
    _service().export(signed_in(), data["email"], data["ticket"])
    return {"status": "notified", "ticket": data["ticket"]}


@bp.route("/erasure", methods=["POST"])
@requires(Permission.DPO_REQUESTS)
@bp.arguments(DpoRequestSchema)
@bp.response(202, DpoDoneSchema)
def erasure(data: dict[str, Any]) -> dict[str, str]:
    """Erase the member's account as their own request would (conversations sealed)."""
    _service().erase(signed_in(), data["email"], data["ticket"])
    return {"status": "deleted", "ticket": data["ticket"]}


@bp.route("/restriction", methods=["POST"])
@requires(Permission.DPO_REQUESTS)
@bp.arguments(DpoRestrictionSchema)
@bp.response(200, DpoRestrictionDoneSchema)
def restriction(data: dict[str, Any]) -> dict[str, Any]:
    """Restrict processing, lift the restriction, or record an objection for the member."""
    state = _service().restriction(signed_in(), data["email"], data["ticket"], data["action"])
    return {"ticket": data["ticket"], "restriction": state}


@bp.route("/rectification", methods=["POST"])
@requires(Permission.DPO_REQUESTS)
@bp.arguments(DpoRectificationSchema)
@bp.response(200, DpoRectificationDoneSchema)
def rectification(data: dict[str, Any]) -> dict[str, Any]:
    """Correct the member's profile fields (registration's rules); the changed names only."""
    changed = _service().rectify(signed_in(), data["email"], data["ticket"], data["changes"])
    return {"ticket": data["ticket"], "fields_changed": changed}
