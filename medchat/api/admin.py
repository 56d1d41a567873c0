"""``/api/v1/admin``: staff accounts and the audit trail (metadata only, never content)."""

from __future__ import annotations

import uuid
from typing import Any

from access_control.permissions import Permission
from access_control.roles import Role
from medchat.api.blueprint import Blueprint
from medchat.schemas.admin import (
    AuditPageSchema,
    StaffCreatedSchema,
    StaffCreateSchema,
    StaffResetSchema,
)
from medchat.schemas.common import PageArgsSchema
from medchat.schemas.cursors import decode_seq_cursor, encode_cursor
from medchat.services.accounts import AccountService
from medchat.services.audit_log import AuditLogService
from medchat.services.sign_ins import SignInService
from medchat.services.staff_reset import StaffResetService
from medchat.web.context import db_session, runtime
from medchat.web.guard import requires, signed_in
from medchat.web.rotation_due import rotation_due_headers

bp = Blueprint("admin", __name__, url_prefix="/api/v1/admin", description="Operations staff")


@bp.route("/accounts", methods=["POST"])
@requires(Permission.ADMIN_ACCOUNTS)
@bp.arguments(StaffCreateSchema)
@bp.response(201, StaffCreatedSchema)
def create_account(data: dict[str, Any]) -> dict[str, Any]:
    """Create a staff account; it enrolls with the one-time token returned here."""
    account, token = AccountService(db_session(), runtime()).create_staff(
        email=data["email"],
        role=Role(data["role"]),
        first_name=data["first_name"],
        last_name=data["last_name"],
        display_name=data.get("display_name"),
    )
    return {"id": account.id, "enrollment_token": token}


@bp.route("/accounts/<uuid:account_id>/disable", methods=["POST"])
@requires(Permission.ADMIN_ACCOUNTS)
@bp.response(204)
def disable_account(account_id: uuid.UUID) -> tuple[None, dict[str, str]]:
    """Disable an account for good; all of its sessions end at once.

    ``Medchat-Rotation-Due`` names the role keys the account held, now due for rotation.
    """
    return None, rotation_due_headers(AccountService(db_session(), runtime()).disable(account_id))


@bp.route("/accounts/<uuid:account_id>/reset", methods=["POST"])
@requires(Permission.ADMIN_ACCOUNTS)
@bp.response(201, StaffResetSchema)
def reset_account(account_id: uuid.UUID) -> dict[str, str]:
    """Clear a staff account's password and TOTP; it re-enrolls with the token returned."""
    token = StaffResetService(db_session(), runtime()).reset(signed_in(), account_id)
    return {"enrollment_token": token}


@bp.route("/accounts/<uuid:account_id>/sign-out", methods=["POST"])
@requires(Permission.ADMIN_ACCOUNTS)
@bp.response(204)
def sign_out_account(account_id: uuid.UUID) -> None:
    """End every sign-in of a staff account (API and console); its credentials stay."""
    SignInService(db_session(), runtime()).end_all_for_staff(signed_in(), account_id)


@bp.route("/audit", methods=["GET"])
@requires(Permission.ADMIN_AUDIT)
@bp.arguments(PageArgsSchema, location="query")
@bp.response(200, AuditPageSchema)
def audit_entries(args: dict[str, Any]) -> dict[str, Any]:
    """Page through the audit trail, newest first."""
    before = decode_seq_cursor(args["cursor"])
    service = AuditLogService(db_session(), runtime())
    entries = service.page(before_seq=before, limit=args["limit"])
    items = service.shown_page(entries)
    more = len(entries) == args["limit"] and entries[-1].seq > 1
    return {"items": items, "next_cursor": encode_cursor(entries[-1].seq) if more else None}
