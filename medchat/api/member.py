"""``/api/v1/me``: the member's own profile (full data: it is theirs), consent, and the
member's data rights (docs/data-rights.md): rectification (e-mail included), export, access
log, erasure, restriction and objection."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from access_control.permissions import Permission
from medchat.api.blueprint import Blueprint
from medchat.schemas import fhir_bundle
from medchat.schemas.common import PageArgsSchema, StatusSchema
from medchat.schemas.cursors import decode_seq_cursor, encode_cursor
from medchat.schemas.member import (
    AccessLogPageSchema,
    AccountDeletionSchema,
    ConsentGrantSchema,
    ConsentSchema,
    ConsentTextSchema,
    EmailChangeConfirmSchema,
    EmailChangeSchema,
    ExportArgsSchema,
    ExportSchema,
    ProfileSchema,
    ProfileUpdateSchema,
    RestrictionStateSchema,
)
from medchat.services.access_log import AccessLogService
from medchat.services.account_deletion import AccountDeletionService
from medchat.services.consent import ConsentService
from medchat.services.consent_texts import ConsentText
from medchat.services.email_change import EmailChangeService
from medchat.services.export import ExportService
from medchat.services.profiles import ProfileService
from medchat.services.restrictions import RestrictionService, RestrictionState
from medchat.web.context import db_session, runtime
from medchat.web.guard import requires, signed_in
from medchat.web.throttling import (
    PER_ADDRESS,
    Throttle,
    client_address,
    throttled,
)

bp = Blueprint("member", __name__, url_prefix="/api/v1", description="Members")


def _consent() -> ConsentService:
    return ConsentService(db_session(), runtime())


@bp.route("/me", methods=["GET"])
@requires(Permission.MEMBER_PROFILE)
@bp.response(200, ProfileSchema)
def me() -> dict[str, Any]:
    """The signed-in member's own profile."""
    return ProfileService(db_session(), runtime()).own_profile(signed_in().account)


@bp.route("/consent", methods=["GET"])
@requires(Permission.PUBLIC)
@bp.response(200, ConsentTextSchema)
def consent_text() -> ConsentText:
    """The consent text members agree to now and its version: a grant names this version."""
    return _consent().current_text()


@bp.route("/me/consent", methods=["GET"])
@requires(Permission.MEMBER_PROFILE)
@bp.response(200, ConsentSchema)
def consent() -> dict[str, Any]:
    """Whether the member consents to health messaging now, to which text version, since when."""
    return {"health_messaging": _consent().state(signed_in().id)}


@bp.route("/me/consent", methods=["PUT"])
@requires(Permission.MEMBER_PROFILE)
@bp.arguments(ConsentGrantSchema)
@bp.response(200, ConsentSchema)
def grant_consent(data: dict[str, Any]) -> dict[str, Any]:
    """Consent to health messaging under a version of the text (a new, audited record)."""
    return {"health_messaging": _consent().grant(signed_in(), data["version"])}


@bp.route("/me/consent", methods=["DELETE"])
@requires(Permission.MEMBER_PROFILE)
@bp.response(204)
def withdraw_consent() -> None:
    """Withdraw consent: no new questions or messages; the history stays readable."""
    _consent().withdraw(signed_in())


def _restrictions() -> RestrictionService:
    return RestrictionService(db_session(), runtime())


@bp.route("/me/restriction", methods=["GET"])
@requires(Permission.MEMBER_RESTRICTION)
@bp.response(200, RestrictionStateSchema)
def restriction() -> RestrictionState:
    """Whether the member restricts processing of their data now (docs/data-rights.md)."""
    return _restrictions().state(signed_in().id)


@bp.route("/me/restriction", methods=["POST"])
@requires(Permission.MEMBER_RESTRICTION)
@bp.response(200, RestrictionStateSchema)
def restrict() -> RestrictionState:
    """Restrict processing: conversations frozen (readable, exportable; nothing new; a doctor
    reads only a question still waiting for its answer) until lifted."""
    return _restrictions().restrict(signed_in().id)


@bp.route("/me/restriction", methods=["DELETE"])
@requires(Permission.MEMBER_RESTRICTION)
@bp.response(204)
def lift_restriction() -> None:
    """Lift the restriction in force (nothing to do without one)."""
    _restrictions().lift(signed_in().id)


@bp.route("/me/objection", methods=["POST"])
@requires(Permission.MEMBER_RESTRICTION)
@bp.response(200, RestrictionStateSchema)
def object_to_processing() -> RestrictionState:
    """Object to processing: consent withdrawn and processing restricted (ground
    ``objection``) until the member or the data protection officer lifts it."""
    return _restrictions().object(signed_in().id)


@bp.route("/me", methods=["PATCH"])
@requires(Permission.MEMBER_PROFILE_UPDATE)
@bp.arguments(ProfileUpdateSchema)
@bp.response(200, ProfileSchema)
def rectify(data: dict[str, Any]) -> dict[str, Any]:
    """Correct one's own details (registration's rules); the changed field names are audited."""
    return ProfileService(db_session(), runtime()).rectify(signed_in(), data)


@bp.route("/me/email", methods=["POST"])
@requires(Permission.MEMBER_PROFILE_UPDATE)
@bp.arguments(EmailChangeSchema)
@bp.response(202, StatusSchema)
@throttled(Throttle(PER_ADDRESS, scope="auth-address"))
def change_email(data: dict[str, Any]) -> dict[str, str]:
    """Correct one's e-mail address (password to confirm, counted as sign-ins are): a
    single-use token is mailed to the new address; the same answer whether it is free or
    taken. Staff accounts ask an admin."""
    EmailChangeService(db_session(), runtime()).request(
        signed_in(), data["password"], data["new_email"], address=client_address()
    )
    return {"status": "accepted"}


@bp.route("/me/email/confirm", methods=["POST"])
@requires(Permission.MEMBER_PROFILE_UPDATE)
@bp.arguments(EmailChangeConfirmSchema)
@bp.response(204)
@throttled(Throttle(PER_ADDRESS, scope="auth-address"))
def confirm_email(data: dict[str, Any]) -> None:
    """Set the new address with the token mailed to it; the old address is told."""
    EmailChangeService(db_session(), runtime()).confirm(signed_in(), data["token"])


def _export_filename(extension: str) -> str:
    day = runtime().clock.now().date().isoformat()
    return f"medchat-export-{day}.{extension}"


@bp.route("/me/export", methods=["GET"])
@requires(Permission.MEMBER_EXPORT)
@bp.arguments(ExportArgsSchema, location="query")
@bp.response(200, ExportSchema)
def export(args: dict[str, Any]) -> Any:
    """Everything held about the member that they can read: JSON, or with ``?format=fhir`` a
    FHIR R4 Bundle of type collection (``application/fhir+json``)."""
    data = ExportService(db_session(), runtime()).export(signed_in(), format=args["format"])
    if args["format"] == "fhir":
        response: Response = jsonify(fhir_bundle.bundle(data))
        response.mimetype = fhir_bundle.MEDIA_TYPE
        response.headers["Content-Disposition"] = (
            f'attachment; filename="{_export_filename("fhir.json")}"'
        )
        return response
    disposition = f'attachment; filename="{_export_filename("json")}"'
    return data.as_dict(), 200, {"Content-Disposition": disposition}


@bp.route("/me/access-log", methods=["GET"])
@requires(Permission.MEMBER_ACCESS_LOG)
@bp.arguments(PageArgsSchema, location="query")
@bp.response(200, AccessLogPageSchema)
def access_log(args: dict[str, Any]) -> dict[str, Any]:
    """Who touched the member's data and when (read, reply, close, retrieval, retention)."""
    page = AccessLogService(db_session(), runtime()).page(
        signed_in(), limit=args["limit"], before_seq=decode_seq_cursor(args["cursor"])
    )
    cursor = None if page.next_cursor is None else encode_cursor(page.next_cursor)
    return {"items": page.items, "next_cursor": cursor}


@bp.route("/me/deletion", methods=["POST"])
@requires(Permission.MEMBER_ACCOUNT_DELETE)
@bp.arguments(AccountDeletionSchema)
@bp.response(202, StatusSchema)
@throttled(Throttle(PER_ADDRESS, scope="auth-address"))
def delete_account(data: dict[str, Any]) -> dict[str, str]:
    """Erase the account (password to confirm, counted as sign-ins are): conversations sealed,
    keys and sessions destroyed, profile removed; what the law keeps is in docs/data-rights.md."""
    status = AccountDeletionService(db_session(), runtime()).delete_own(
        signed_in(), data["password"], address=client_address()
    )
    return {"status": status}
