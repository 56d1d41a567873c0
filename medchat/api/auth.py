"""``/api/v1/auth``: registration, sign-in, enrollment, refresh, logout, password, 2FA, the
forgotten-password flow (``password-reset``, ``password-reset/confirm``), and the caller's
sign-ins (``sessions``: list, end one, end every other)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import request

from access_control import crypto
from access_control.networks import rate_limit_address
from access_control.permissions import Permission
from medchat.api.blueprint import Blueprint
from medchat.schemas.auth import (
    EnrollConfirmSchema,
    EnrollSchema,
    MfaConfirmSchema,
    MfaRemoveSchema,
    PasswordChangeSchema,
    PasswordResetConfirmSchema,
    PasswordResetRequestSchema,
    ProvisioningSchema,
    RecoveryCodesSchema,
    RefreshSchema,
    RegisterSchema,
    SignInListSchema,
    StepUpSchema,
    TokenRequestSchema,
    TokenResponseSchema,
)
from medchat.schemas.common import StatusSchema
from medchat.services.accounts import AccountService, NewMember
from medchat.services.authentication import AuthenticationService, SignIn
from medchat.services.password_reset import PasswordResetService
from medchat.services.second_factor import SecondFactorService
from medchat.services.sign_ins import SignInService, sign_in_origin
from medchat.web.context import account_limit_key, db_session, runtime
from medchat.web.guard import requires, signed_in
from medchat.web.password_gate import password_work_first
from medchat.web.throttling import (
    PER_ACCOUNT_FAILURES,
    PER_ADDRESS,
    Throttle,
    client_address,
    is_failed_attempt,
    throttled,
)

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Sign-in and 2FA")


def _account_key() -> str:
    """Limit per account by the e-mail's blind index (no address reaches the limiter)."""
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str) or not email:
        token = body.get("enrollment_token") if isinstance(body, dict) else None
        if isinstance(token, str) and token:
            return "enroll:" + crypto.token_hash(token).hex()
        return "address:" + rate_limit_address(request.remote_addr)
    return account_limit_key(email)


def _reset_token_key() -> str:
    """Limit wrong codes per reset token (its hash): a token is one account's."""
    body = request.get_json(silent=True)
    token = body.get("reset_token") if isinstance(body, dict) else None
    if isinstance(token, str) and token:
        return "reset:" + crypto.token_hash(token).hex()
    return "address:" + rate_limit_address(request.remote_addr)


#: Reset mails per address asked for, counted for every address alike (known or not), so
#: the limit says nothing about who is a member and nobody's mailbox can be flooded.
RESET_REQUESTS_PER_ACCOUNT = "5 per hour; 20 per day"

_per_address = throttled(Throttle(PER_ADDRESS, scope="auth-address"))
_per_account = throttled(
    Throttle(
        PER_ACCOUNT_FAILURES, scope="auth-account", key=_account_key, deduct_when=is_failed_attempt
    )
)


#: How clients present the access token (RFC 6750 "Bearer"), as OAuth 2 clients expect it.
TOKEN_TYPE = "Bearer"  # noqa: S105  # nosec B105  # a scheme's name, not a secret


def _token_body(sign_in: SignIn) -> dict[str, Any]:
    return {
        "access_token": sign_in.tokens.access_token,
        "refresh_token": sign_in.tokens.refresh_token,
        "token_type": TOKEN_TYPE,
        "expires_in": sign_in.tokens.expires_in,
        "role": sign_in.account.role,
    }


def _auth() -> AuthenticationService:
    return AuthenticationService(db_session(), runtime())


def _accounts() -> AccountService:
    return AccountService(db_session(), runtime())


@bp.route("/register", methods=["POST"])
@requires(Permission.PUBLIC)
@bp.arguments(RegisterSchema)
@bp.response(202, StatusSchema)
@_per_address
def register(data: dict[str, Any]) -> dict[str, str]:
    """Create a member account; the answer never tells whether the address was taken."""
    _accounts().register_member(NewMember(**data))
    return {"status": "accepted"}


@bp.route("/token", methods=["POST"])
@password_work_first  # under a flood, refused before dispatch (medchat.web.password_gate)
@requires(Permission.PUBLIC)
@bp.arguments(TokenRequestSchema)
@bp.response(200, TokenResponseSchema)
@_per_address
def token(data: dict[str, Any]) -> dict[str, Any]:
    """Sign in with e-mail, password and (where needed) a TOTP or recovery code.

    Failures count per account and address and per account (``sign_in_limits``); a locked
    account answers 429 unless the password and a valid code come together."""
    address = client_address()
    sign_in = _auth().login(
        data["email"],
        data["password"],
        data.get("totp_code"),
        address=address,
        origin=sign_in_origin(runtime(), request.headers.get("User-Agent"), address),
    )
    return _token_body(sign_in)


@bp.route("/refresh", methods=["POST"])
@requires(Permission.PUBLIC)
@bp.arguments(RefreshSchema)
@bp.response(200, TokenResponseSchema)
@_per_address
def refresh(data: dict[str, Any]) -> dict[str, Any]:
    """Spend a refresh token for a new pair; a reused one revokes its whole family."""
    return _token_body(_auth().refresh(data["refresh_token"], address=request.remote_addr))


@bp.route("/enroll", methods=["POST"])
@requires(Permission.PUBLIC)
@bp.arguments(EnrollSchema)
@bp.response(200, ProvisioningSchema)
@_per_address
@_per_account
def enroll(data: dict[str, Any]) -> dict[str, str]:
    """Set the password of a new staff account and start TOTP enrollment."""
    start = _accounts().begin_enrollment(data["enrollment_token"], data["password"])
    return {"provisioning_uri": start.provisioning_uri, "qr_svg": start.qr_svg}


@bp.route("/enroll/confirm", methods=["POST"])
@requires(Permission.PUBLIC)
@bp.arguments(EnrollConfirmSchema)
@bp.response(200, RecoveryCodesSchema)
@_per_address
@_per_account
def enroll_confirm(data: dict[str, Any]) -> dict[str, list[str]]:
    """Confirm the first TOTP code; the account becomes active and gets recovery codes."""
    codes = _accounts().confirm_enrollment(data["enrollment_token"], data["totp_code"])
    return {"recovery_codes": codes}


@bp.route("/logout", methods=["POST"])
@requires(Permission.SELF_MANAGE)
@bp.response(204)
def logout() -> None:
    """End this sign-in: its access and refresh tokens stop working at once."""
    principal = signed_in()
    _auth().logout(principal.token)


@bp.route("/password", methods=["POST"])
@requires(Permission.SELF_MANAGE)
@bp.arguments(PasswordChangeSchema)
@bp.response(204)
@_per_address
def change_password(data: dict[str, Any]) -> None:
    """Change the password; every other session of the account ends, and a notice is mailed."""
    principal = signed_in()
    _auth().change_password(
        principal.account,
        principal.token,
        data["current_password"],
        data["new_password"],
        address=client_address(),
    )


@bp.route("/mfa/enroll", methods=["POST"])
@requires(Permission.SELF_MANAGE)
@bp.arguments(StepUpSchema)
@bp.response(200, ProvisioningSchema)
@_per_address
def mfa_enroll(data: dict[str, Any]) -> dict[str, str]:
    """Start TOTP enrollment for the signed-in account: its password again (step-up)."""
    principal = signed_in()
    start = SecondFactorService(db_session(), runtime()).start(
        principal.account, data["password"], address=client_address()
    )
    return {"provisioning_uri": start.provisioning_uri, "qr_svg": start.qr_svg}


@bp.route("/mfa/confirm", methods=["POST"])
@requires(Permission.SELF_MANAGE)
@bp.arguments(MfaConfirmSchema)
@bp.response(200, RecoveryCodesSchema)
@_per_address
def mfa_confirm(data: dict[str, Any]) -> dict[str, list[str]]:
    """Confirm TOTP with a first code; sign-ins then ask for a code. A notice is mailed."""
    principal = signed_in()
    codes = SecondFactorService(db_session(), runtime()).confirm(
        principal.account, data["totp_code"], principal.token.family_id
    )
    return {"recovery_codes": codes}


@bp.route("/mfa/remove", methods=["POST"])
@requires(Permission.SELF_MANAGE)
@bp.arguments(MfaRemoveSchema)
@bp.response(204)
@_per_address
def mfa_remove(data: dict[str, Any]) -> None:
    """Turn a member's TOTP off: password and a current or recovery code. A notice is mailed."""
    principal = signed_in()
    SecondFactorService(db_session(), runtime()).remove(
        principal.account, data["password"], data["totp_code"], address=client_address()
    )


@bp.route("/password-reset", methods=["POST"])
@requires(Permission.PUBLIC)
@bp.arguments(PasswordResetRequestSchema)
@bp.response(202, StatusSchema)
@_per_address
@throttled(Throttle(RESET_REQUESTS_PER_ACCOUNT, scope="reset-account", key=_account_key))
def password_reset(data: dict[str, Any]) -> dict[str, str]:
    """Mail a single-use reset token to a member; the same answer for every address."""
    PasswordResetService(db_session(), runtime()).request(data["email"])
    return {"status": "accepted"}


@bp.route("/password-reset/confirm", methods=["POST"])
@requires(Permission.PUBLIC)
@bp.arguments(PasswordResetConfirmSchema)
@bp.response(204)
@_per_address
@throttled(
    Throttle(
        PER_ACCOUNT_FAILURES,
        scope="reset-token",
        key=_reset_token_key,
        deduct_when=is_failed_attempt,
    )
)
def password_reset_confirm(data: dict[str, Any]) -> None:
    """Set a new password with the mailed token (and a TOTP code where the member has it)."""
    PasswordResetService(db_session(), runtime()).confirm(
        data["reset_token"], data["new_password"], data.get("totp_code")
    )


def _sign_ins() -> SignInService:
    return SignInService(db_session(), runtime())


@bp.route("/sessions", methods=["GET"])
@requires(Permission.SELF_MANAGE)
@bp.response(200, SignInListSchema)
def sessions() -> dict[str, Any]:
    """The caller's live sign-ins, most recently used first; ``current`` marks this one."""
    principal = signed_in()
    views = _sign_ins().live(principal.account, principal.token, client_address())
    items = [
        {
            "id": view.id,
            "kind": view.kind,
            "device": view.device,
            "created_at": view.created_at,
            "last_used_at": view.last_used_at,
            "place": "same_network" if view.same_network else None,
            "current": view.current,
        }
        for view in views
    ]
    return {"items": items}


@bp.route("/sessions/<uuid:session_id>", methods=["DELETE"])
@requires(Permission.SELF_MANAGE)
@bp.response(204)
def end_session(session_id: uuid.UUID) -> None:
    """End one of the caller's sign-ins: its tokens stop at once. 404 for any other id."""
    _sign_ins().end(signed_in().account, session_id)


@bp.route("/sessions/revoke-others", methods=["POST"])
@requires(Permission.SELF_MANAGE)
@bp.response(204)
def end_other_sessions() -> None:
    """Sign out everywhere else: every sign-in of the caller ends but this one."""
    principal = signed_in()
    _sign_ins().end_others(principal.account, principal.token)
