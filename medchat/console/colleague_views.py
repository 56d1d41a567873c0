"""Console: hand the physician key to a colleague after comparing their key fingerprint.

SECURITY-MODEL key hierarchy 10: a grant shows the newcomer's key fingerprint. The page shows
it *before* the clinician confirms, to compare with the fingerprint on the colleague's own
account page (read aloud, in person or on a call you placed); the confirmation carries the
fingerprint that was shown, and the grant is refused (409) if the colleague's key is no longer
that one, so a key swapped in between is never sealed to. The same service as the API decides
(``RoleKeyService``); the form carries a CSRF token like every console form.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import render_template, request

from access_control.permissions import Permission
from medchat.console import bp
from medchat.console.forms import GrantForm
from medchat.models import KeyRole
from medchat.services.role_keys import RoleKeyService
from medchat.web.context import db_session, runtime
from medchat.web.guard import requires, signed_in


def _service() -> RoleKeyService:
    return RoleKeyService(db_session(), runtime())


@bp.get("/colleagues")
@requires(Permission.CLINICIAN_GRANT)
def colleagues() -> Any:
    """Colleagues and whether each holds the physician key; a link to grant it."""
    listed = _service().colleagues(signed_in(), KeyRole.PHYSICIAN)
    return render_template("console/colleagues.html", colleagues=listed)


@bp.route("/colleagues/<uuid:account_id>/grant", methods=["GET", "POST"])
@requires(Permission.CLINICIAN_GRANT)
def grant(account_id: uuid.UUID) -> Any:
    """Show the colleague's key fingerprint; the confirmation grants to that key only."""
    principal = signed_in()
    service = _service()
    form = GrantForm()
    if form.validate_on_submit():
        granted = service.grant(
            principal, KeyRole.PHYSICIAN, account_id, expected_fingerprint=form.fingerprint.data
        )
        return render_template("console/granted.html", granted=granted)
    status = 400 if request.method == "POST" else 200
    key = service.colleague_key(principal, KeyRole.PHYSICIAN, account_id)
    form.fingerprint.data = key.fingerprint
    return render_template("console/grant.html", form=form, key=key), status
