"""Console pages for the queue and a conversation (built on the clinician services)."""

from __future__ import annotations

from typing import Any

from access_control.guard import requires
from access_control.permissions import Permission
from medchat.console import bp


@bp.get("/queue")
@requires(Permission.CLINICIAN_CONVERSATIONS)
def queue() -> Any:
    from flask import render_template

    return render_template("console/error.html", title="Queue", message="Coming soon")
