"""Role-key grants between colleagues: only a holder's session can hand a role key on.

A grant shows the colleague's key fingerprint before (``GET …/key``) and in its answer (200),
and refuses a key other than the one the granter compared. A revocation needs the revoker's
password again, never removes the last active holder (409 ``last_key_holder``), and answers
204 with ``Medchat-Rotation-Due`` naming the role key now due for rotation.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

from access_control.permissions import Permission
from medchat.api.blueprint import Blueprint
from medchat.models import KeyRole
from medchat.schemas.auth import StepUpSchema
from medchat.schemas.colleagues import ColleagueKeySchema, GrantedSchema, GrantRequestSchema
from medchat.services.role_keys import RoleKeyService
from medchat.web.context import db_session, runtime
from medchat.web.guard import requires, signed_in
from medchat.web.rotation_due import rotation_due_headers
from medchat.web.throttling import PER_ADDRESS, Throttle, client_address, throttled

bp = Blueprint("colleagues", __name__, url_prefix="/api/v1", description="Role-key grants")
#: Revocations ask for the password: limited per address as sign-ins are.
_per_address = throttled(Throttle(PER_ADDRESS, scope="auth-address"))


def _service() -> RoleKeyService:
    return RoleKeyService(db_session(), runtime())


def _key(key_role: KeyRole, account_id: uuid.UUID) -> dict[str, Any]:
    key = _service().colleague_key(signed_in(), key_role, account_id)
    return {"account_id": key.account_id, "fingerprint": key.fingerprint}


def _grant(key_role: KeyRole, account_id: uuid.UUID, data: dict[str, Any]) -> dict[str, Any]:
    granted = _service().grant(
        signed_in(), key_role, account_id, expected_fingerprint=data.get("fingerprint")
    )
    return asdict(granted)


def _revoke(
    key_role: KeyRole, account_id: uuid.UUID, data: dict[str, Any]
) -> tuple[None, dict[str, str]]:
    due = _service().revoke(
        signed_in(), key_role, account_id, password=data["password"], address=client_address()
    )
    return None, rotation_due_headers(due)


@bp.route("/clinician/colleagues/<uuid:account_id>/key", methods=["GET"])
@requires(Permission.CLINICIAN_GRANT)
@bp.response(200, ColleagueKeySchema)
def physician_colleague_key(account_id: uuid.UUID) -> dict[str, Any]:
    """The key fingerprint a grant to this colleague would seal to: compare it with them."""
    return _key(KeyRole.PHYSICIAN, account_id)


@bp.route("/clinician/colleagues/<uuid:account_id>/grant", methods=["POST"])
@requires(Permission.CLINICIAN_GRANT)
@bp.arguments(GrantRequestSchema)
@bp.response(200, GrantedSchema)
def grant_physician_key(data: dict[str, Any], account_id: uuid.UUID) -> dict[str, Any]:
    """Seal the physician role key to a colleague (the caller must hold it)."""
    return _grant(KeyRole.PHYSICIAN, account_id, data)


@bp.route("/clinician/colleagues/<uuid:account_id>/grant", methods=["DELETE"])
@requires(Permission.CLINICIAN_GRANT)
@bp.arguments(StepUpSchema)
@bp.response(204)
@_per_address
def revoke_physician_key(
    data: dict[str, Any], account_id: uuid.UUID
) -> tuple[None, dict[str, str]]:
    """Remove a colleague's physician role key (the caller's password again); their
    sessions end at once."""
    return _revoke(KeyRole.PHYSICIAN, account_id, data)


@bp.route("/compliance/colleagues/<uuid:account_id>/key", methods=["GET"])
@requires(Permission.COMPLIANCE_GRANT)
@bp.response(200, ColleagueKeySchema)
def archive_colleague_key(account_id: uuid.UUID) -> dict[str, Any]:
    """The key fingerprint a grant to this officer would seal to: compare it with them."""
    return _key(KeyRole.ARCHIVE, account_id)


@bp.route("/compliance/colleagues/<uuid:account_id>/grant", methods=["POST"])
@requires(Permission.COMPLIANCE_GRANT)
@bp.arguments(GrantRequestSchema)
@bp.response(200, GrantedSchema)
def grant_archive_key(data: dict[str, Any], account_id: uuid.UUID) -> dict[str, Any]:
    """Seal the compliance archive key to another officer (the caller must hold it)."""
    return _grant(KeyRole.ARCHIVE, account_id, data)


@bp.route("/compliance/colleagues/<uuid:account_id>/grant", methods=["DELETE"])
@requires(Permission.COMPLIANCE_GRANT)
@bp.arguments(StepUpSchema)
@bp.response(204)
@_per_address
def revoke_archive_key(data: dict[str, Any], account_id: uuid.UUID) -> tuple[None, dict[str, str]]:
    """Remove another officer's archive key (the caller's password again); their sessions
    end at once."""
    return _revoke(KeyRole.ARCHIVE, account_id, data)
