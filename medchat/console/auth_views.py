"""Console sign-in: password, then TOTP, first-time enrollment, account page, logout.

The same services as the API decide (``AuthenticationService``, ``AccountService``); the views
only move between pages. A failed password or code answers 401 with the form again, which
counts toward the same per-account lockout as the API.
"""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from access_control import hybrid_kem
from access_control.guard import requires, signed_in
from access_control.password_kdf import Password
from access_control.permissions import Permission
from access_control.roles import Role
from access_control.throttling import PER_ACCOUNT_FAILURES, PER_ADDRESS, Throttle, throttled
from medchat import audit
from medchat.console import bp, cookie
from medchat.console.forms import (
    ActionForm,
    EnrollConfirmForm,
    EnrollForm,
    LoginForm,
    PasswordChangeForm,
    TotpForm,
)
from medchat.errors import InvalidToken, MedchatError, WeakPassword
from medchat.services.accounts import AccountService
from medchat.services.authentication import AuthenticationService
from medchat.web import account_limit_key, db_session, runtime


def _form_account_key() -> str:
    email = request.form.get("email", "")
    if email:
        return account_limit_key(email)
    return "console:" + (request.remote_addr or "unknown")


_limits = throttled(
    Throttle(PER_ADDRESS, scope="console-address"),
    Throttle(
        PER_ACCOUNT_FAILURES,
        scope="auth-account",
        key=_form_account_key,
        deduct_when=lambda response: response.status_code == 401,
    ),
)


def page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(f"console/{template}", **context), status


@bp.get("/")
def index() -> Response:
    return redirect(url_for("console.queue"))


@bp.route("/login", methods=["GET", "POST"])
@_limits
def login() -> Any:
    """Step one: e-mail and password. Success opens a pending session for the TOTP step."""
    form = LoginForm()
    if not form.validate_on_submit():
        ended = bool(request.args.get("ended"))
        return page("login.html", 400 if request.method == "POST" else 200, form=form, ended=ended)
    auth = AuthenticationService(db_session(), runtime())
    typed = Password(form.password.data or "")
    try:
        account = auth.check_password(form.email.data or "", typed)
    except MedchatError:
        return page("login.html", 401, form=form, error="The e-mail or password is wrong.")
    if account.role != Role.CLINICIAN:
        return page("login.html", 403, form=form, error="This console is for clinicians.")
    if not account.has_totp:
        return page(
            "login.html",
            403,
            form=form,
            error="Finish enrollment first, with the enrollment token from your administrator.",
        )
    # No key is opened before the second factor: only the scrypt work is done now, and its
    # result travels sealed in the cookie (access_control.console_sessions).
    runs = runtime().custody(db_session()).personal_key_runs(account.id, typed)
    token, carried = cookie.console_sessions().start_pending(account.id, runs)
    cookie.begin(token, pending=True, carried=carried)
    audit.record(db_session(), "console.password_ok", target_type="account", target_id=account.id)
    return redirect(url_for("console.totp"))


@bp.route("/totp", methods=["GET", "POST"])
@_limits
def totp() -> Any:
    """Step two: the code. Success opens the keys and replaces the pending session."""
    pending = session.get(cookie.PENDING_KEY)
    sessions = cookie.console_sessions()
    try:
        record, account = sessions.pending(pending or "")
    except InvalidToken:
        cookie.end()
        return redirect(url_for("console.login", ended=1))
    form = TotpForm()
    if not form.validate_on_submit():
        return page("totp.html", 400 if request.method == "POST" else 200, form=form)
    auth = AuthenticationService(db_session(), runtime())
    try:
        auth.check_second_factor(account, form.code.data)
    except MedchatError:
        return page("totp.html", 401, form=form, error="That code is wrong or was used already.")
    try:
        runs = sessions.carried_password(record, pending or "", session.get(cookie.CARRIED_KEY, ""))
    except InvalidToken:
        cookie.end()
        return redirect(url_for("console.login", ended=1))
    keyring = runtime().custody(db_session()).open_keyring(account.id, runs)
    token = sessions.promote(pending or "", keyring)
    cookie.begin(token, pending=False)
    audit.record(db_session(), "console.login", target_type="account", target_id=account.id)
    return redirect(url_for("console.queue"))


@bp.route("/enroll", methods=["GET", "POST"])
@_limits
def enroll() -> Any:
    """First-time enrollment: set a password, then scan the QR code (or type the secret)."""
    form = EnrollForm()
    if not form.validate_on_submit():
        return page("enroll.html", 400 if request.method == "POST" else 200, form=form)
    accounts = AccountService(db_session(), runtime())
    try:
        start = accounts.begin_enrollment(
            form.enrollment_token.data or "", form.password.data or ""
        )
    except WeakPassword as exc:
        hints = (exc.details or {}).get("password", [])
        return page("enroll.html", 422, form=form, error=exc.message, hints=hints)
    except MedchatError as exc:
        return page("enroll.html", 401, form=form, error=exc.message)
    secret = start.provisioning_uri.split("secret=", 1)[1].split("&", 1)[0]
    confirm = EnrollConfirmForm(enrollment_token=form.enrollment_token.data)
    return page("enroll_qr.html", form=confirm, qr_svg=start.qr_svg, secret=secret)


@bp.post("/enroll/confirm")
@_limits
def enroll_confirm() -> Any:
    form = EnrollConfirmForm()
    if not form.validate_on_submit():
        return page("enroll.html", 400, form=EnrollForm(), error="Start enrollment again.")
    accounts = AccountService(db_session(), runtime())
    try:
        codes = accounts.confirm_enrollment(form.enrollment_token.data or "", form.code.data or "")
    except MedchatError as exc:
        return page("enroll.html", 401, form=EnrollForm(), error=exc.message)
    return page("recovery_codes.html", codes=codes)


@bp.post("/logout")
@requires(Permission.SELF_MANAGE)
def logout() -> Any:
    """End the session: its row is deleted and the browser is told to forget everything."""
    if not ActionForm().validate_on_submit():
        abort(403)
    principal = signed_in()
    cookie.console_sessions().end(session.get(cookie.SESSION_KEY, ""))
    audit.record(db_session(), "console.logout", target_type="account", target_id=principal.id)
    cookie.end()
    response = redirect(url_for("console.login"))
    response.headers["Clear-Site-Data"] = '"cache", "cookies", "storage"'
    return response


@bp.route("/account", methods=["GET", "POST"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
def account() -> Any:
    """The clinician's key fingerprint, role keys held, and a password change form."""
    principal = signed_in()
    form = PasswordChangeForm()
    message = error = None
    status = 200
    if form.validate_on_submit():
        auth = AuthenticationService(db_session(), runtime())
        try:
            auth.change_password(
                principal.account,
                principal.token,
                form.current_password.data or "",
                form.new_password.data or "",
            )
            message = "Your password was changed; your other sessions have ended."
        except WeakPassword as exc:
            error, status = exc.message, 422
        except MedchatError:
            error, status = "The current password is wrong.", 401
    elif request.method == "POST":
        status = 400
    personal = runtime().custody(db_session()).personal_key(principal.id)
    fingerprint = (
        hybrid_kem.format_fingerprint(hybrid_kem.public_key_fingerprint(personal.public_key))
        if personal
        else None
    )
    roles = sorted({held.role for held in principal.keyring.roles})
    return page(
        "account.html",
        status,
        form=form,
        message=message,
        error=error,
        fingerprint=fingerprint,
        roles=roles,
        display_name=principal.account.display_name,
    )
