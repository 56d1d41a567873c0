"""``/api/v1/me``: the member's own profile (full data: it is theirs)."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from access_control.guard import requires, signed_in
from access_control.permissions import Permission
from medchat.schemas.member import ProfileSchema
from medchat.services.profiles import ProfileService
from medchat.web import db_session, runtime

bp = Blueprint("member", __name__, url_prefix="/api/v1", description="Members")


@bp.route("/me", methods=["GET"])
@requires(Permission.MEMBER_PROFILE)
@bp.response(200, ProfileSchema)
def me() -> dict[str, Any]:
    """The signed-in member's own profile."""
    return ProfileService(db_session(), runtime()).own_profile(signed_in().account)
