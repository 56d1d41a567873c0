"""Console sign-in: password, then TOTP, first-time enrollment, account page, logout.

The same services as the API decide (``AuthenticationService``, ``AccountService``); the views
only move between pages. A failed password or code answers 401 with the form again, and counts
toward the same failure budgets as the API (``access_control.sign_in_limits``): the TOTP step
spends the account's one second-factor budget, not one of its client address. A locked account
answers 429 with a sign-in form that takes the password and the code together, which is what
still opens it.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import abort, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from access_control import hybrid_kem
from access_control.password_kdf import Password
from access_control.permissions import Permission
from access_control.roles import Role
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
from medchat.errors import DependencyDown, InvalidToken, MedchatError, RateLimited, WeakPassword
from medchat.identity.console_sessions import ConsoleSessions
from medchat.services.accounts import AccountService
from medchat.services.authentication import AuthenticationService
from medchat.services.notifications import note_device
from medchat.web.context import account_limit_key, db_session, runtime
from medchat.web.errors import audit_refusal
from medchat.web.guard import requires, signed_in
from medchat.web.throttling import (
    PER_ACCOUNT_FAILURES,
    PER_ADDRESS,
    Throttle,
    client_address,
    throttled,
)


def _form_account_key() -> str:
    email = request.form.get("email", "")
    if email:
        return account_limit_key(email)
    return "console:" + (request.remote_addr or "unknown")


#: Sign-in pages: per address here; failures are counted per account by the service.
_limits = throttled(Throttle(PER_ADDRESS, scope="console-address"))
#: Enrollment pages also limit wrong attempts per enrollment form (as the API's enroll).
_enroll_limits = throttled(
    Throttle(PER_ADDRESS, scope="console-address"),
    Throttle(
        PER_ACCOUNT_FAILURES,
        scope="auth-account",
        key=_form_account_key,
        deduct_when=lambda response: response.status_code == 401,
    ),
)
LOCKED = (
    "Too many failed sign-ins for this account. Sign in with your password and the code "
    "from your authenticator app together, or try again later."
)
TOO_MANY_CODES = "Too many wrong codes for this account. Try again later."


def _too_many(
    template: str, exc: RateLimited, error: str, **context: Any
) -> tuple[str, int, dict[str, str]]:
    """A 429 page (audited as a refusal), still offering what opens a locked account."""
    audit_refusal(exc.status, exc.code)
    html, status = page(template, exc.status, error=error, **context)
    return html, status, exc.headers


def page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(f"console/{template}", **context), status


@bp.get("/")
def index() -> Response:
    return redirect(url_for("console.queue"))


@bp.route("/login", methods=["GET", "POST"])
@_limits
def login() -> Any:
    """Step one: e-mail and password. Success opens a pending session for the TOTP step;
    with a valid code given too (the locked-account form), a full session at once."""
    form = LoginForm()
    if not form.validate_on_submit():
        ended = bool(request.args.get("ended"))
        status = 400 if request.method == "POST" else 200
        return page("login.html", status, form=form, ended=ended, with_code=bool(form.code.data))
    auth = AuthenticationService(db_session(), runtime())
    typed = Password(form.password.data or "")
    try:
        checked = auth.authenticate(
            form.email.data or "",
            typed,
            form.code.data or None,
            address=client_address(),
            code_follows=True,
        )
    except RateLimited as exc:
        return _too_many("login.html", exc, LOCKED, form=form, with_code=True)
    except DependencyDown:
        raise  # password work full: the "temporarily unavailable" page, never "wrong password"
    except MedchatError:
        error = "The e-mail, password or code is wrong."
        return page("login.html", 401, form=form, error=error, with_code=bool(form.code.data))
    account = checked.account
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
    # result travels sealed in the cookie (medchat.identity.console_sessions).
    custody = runtime().custody(db_session())
    runs = custody.personal_key_runs(account.id, typed)
    sessions = cookie.console_sessions()
    token, carried = sessions.start_pending(account.id, runs)
    audit.record(db_session(), "console.password_ok", target_type="account", target_id=account.id)
    if checked.mfa:
        # Password and code in one form (a locked account): the second factor passed, so the
        # keys open now, from the same scrypt run.
        keyring = custody.open_keyring(account.id, runs)
        cookie.begin(sessions.promote(token, keyring), pending=False)
        _note_device(sessions, account.id)
        audit.record(db_session(), "console.login", target_type="account", target_id=account.id)
        return redirect(url_for("console.queue"))
    cookie.begin(token, pending=True, carried=carried)
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
    except RateLimited as exc:
        return _too_many("totp.html", exc, TOO_MANY_CODES, form=form)
    except MedchatError:
        return page("totp.html", 401, form=form, error="That code is wrong or was used already.")
    try:
        runs = sessions.carried_password(record, pending or "", session.get(cookie.CARRIED_KEY, ""))
    except InvalidToken:
        cookie.end()
        return redirect(url_for("console.login", ended=1))
    keyring = runtime().custody(db_session()).open_keyring(account.id, runs)
    token = sessions.promote(pending or "", keyring)
    _note_device(sessions, account.id)
    cookie.begin(token, pending=False)
    audit.record(db_session(), "console.login", target_type="account", target_id=account.id)
    return redirect(url_for("console.queue"))


def _note_device(sessions: ConsoleSessions, account_id: uuid.UUID) -> None:
    """A console sign-in from a device the account never used is mailed, as the API's is."""
    if sessions.promoted is not None:
        note_device(db_session(), runtime(), account_id, sessions.origin.device, sessions.promoted)


@bp.route("/enroll", methods=["GET", "POST"])
@_enroll_limits
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
    except DependencyDown:
        raise
    except MedchatError as exc:
        return page("enroll.html", 401, form=form, error=exc.message)
    secret = start.provisioning_uri.split("secret=", 1)[1].split("&", 1)[0]
    confirm = EnrollConfirmForm(enrollment_token=form.enrollment_token.data)
    return page("enroll_qr.html", form=confirm, qr_svg=start.qr_svg, secret=secret)


@bp.post("/enroll/confirm")
@_enroll_limits
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
                address=client_address(),
            )
            message = "Your password was changed; your other sessions have ended."
        except WeakPassword as exc:
            error, status = exc.message, 422
        except RateLimited as exc:
            audit_refusal(exc.status, exc.code)
            error, status = exc.message, exc.status
        except DependencyDown:
            raise
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
