"""Console: a clinician's own sign-ins (issue 17, item 6), the staff side of the API's
``/auth/sessions``: list them, end one, sign out everywhere else.

A laptop left signed in at a practice, a phone lost: staff hold the physician key in their
sessions, so they must see and end them without asking an admin. The page calls the same
``SignInService`` as the API (one rule for who may end what: someone else's sign-in is 404);
each button is a POST form with a CSRF token. Ending this console session itself is the
logout button, not a row here, so a click in the list never signs the clinician out by surprise.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import abort, redirect, request, url_for
from werkzeug.wrappers import Response

from access_control.permissions import Permission
from medchat.console import bp
from medchat.console.auth_views import page
from medchat.console.forms import ActionForm
from medchat.services.sign_ins import SignInService
from medchat.web.context import db_session, runtime
from medchat.web.guard import requires, signed_in
from medchat.web.throttling import client_address

#: The notices a redirect may name (query ``notice``): nothing else is echoed into the page.
NOTICES = {
    "ended": "That sign-in has ended: its device must sign in again.",
    "others": "Every other sign-in has ended.",
}


def _service() -> SignInService:
    return SignInService(db_session(), runtime())


@bp.get("/sign-ins")
@requires(Permission.SELF_MANAGE)
def sign_ins() -> Any:
    """Live sign-ins, most recently used first; this session marked and not endable here."""
    principal = signed_in()
    views = _service().live(principal.account, principal.token, client_address())
    notice = NOTICES.get(request.args.get("notice", ""))
    return page("sign_ins.html", sign_ins=views, form=ActionForm(), notice=notice)


@bp.post("/sign-ins/<uuid:family_id>/end")
@requires(Permission.SELF_MANAGE)
def end_sign_in(family_id: uuid.UUID) -> Any:
    """End one sign-in (404 for any id that is not one of the caller's; 403 without CSRF)."""
    principal = signed_in()
    if not ActionForm().validate_on_submit():
        abort(403)  # CSRFProtect refuses a missing token first (403); defence in depth
    if family_id == principal.token.family_id:
        message = "This is the session you are using: sign out to end it."
        return page("error.html", 409, title="Not possible", message=message)
    _service().end(principal.account, family_id)
    return _back("ended")


@bp.post("/sign-ins/end-others")
@requires(Permission.SELF_MANAGE)
def end_other_sign_ins() -> Any:
    """Sign out everywhere else: every sign-in of the clinician ends but this one."""
    principal = signed_in()
    if not ActionForm().validate_on_submit():
        abort(403)  # CSRFProtect refuses a missing token first (403); defence in depth
    _service().end_others(principal.account, principal.token)
    return _back("others")


def _back(notice: str) -> Response:
    return redirect(url_for("console.sign_ins", notice=notice))
