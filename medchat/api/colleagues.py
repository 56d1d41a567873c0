"""Role-key grants between colleagues: only a holder's session can hand a role key on.

A revocation answers 204 with ``Medchat-Rotation-Due`` naming the role key now due for rotation.
"""

from __future__ import annotations

import uuid

from flask_smorest import Blueprint

from access_control.guard import requires, signed_in
from access_control.permissions import Permission
from medchat.api.rotation_due import rotation_due_headers
from medchat.models import KeyRole
from medchat.services.role_keys import RoleKeyService
from medchat.web import db_session, runtime

bp = Blueprint("colleagues", __name__, url_prefix="/api/v1", description="Role-key grants")


def _service() -> RoleKeyService:
    return RoleKeyService(db_session(), runtime())


@bp.route("/clinician/colleagues/<uuid:account_id>/grant", methods=["POST"])
@requires(Permission.CLINICIAN_GRANT)
@bp.response(204)
def grant_physician_key(account_id: uuid.UUID) -> None:
    """Seal the physician role key to a colleague (the caller must hold it)."""
    _service().grant(signed_in(), KeyRole.PHYSICIAN, account_id)


@bp.route("/clinician/colleagues/<uuid:account_id>/grant", methods=["DELETE"])
@requires(Permission.CLINICIAN_GRANT)
@bp.response(204)
def revoke_physician_key(account_id: uuid.UUID) -> tuple[None, dict[str, str]]:
    """Remove a colleague's physician role key; their sessions end at once."""
    return None, rotation_due_headers(_service().revoke(signed_in(), KeyRole.PHYSICIAN, account_id))


@bp.route("/compliance/colleagues/<uuid:account_id>/grant", methods=["POST"])
@requires(Permission.COMPLIANCE_GRANT)
@bp.response(204)
def grant_archive_key(account_id: uuid.UUID) -> None:
    """Seal the compliance archive key to another officer (the caller must hold it)."""
    _service().grant(signed_in(), KeyRole.ARCHIVE, account_id)


@bp.route("/compliance/colleagues/<uuid:account_id>/grant", methods=["DELETE"])
@requires(Permission.COMPLIANCE_GRANT)
@bp.response(204)
def revoke_archive_key(account_id: uuid.UUID) -> tuple[None, dict[str, str]]:
    """Remove another officer's archive key; their sessions end at once."""
    return None, rotation_due_headers(_service().revoke(signed_in(), KeyRole.ARCHIVE, account_id))
