"""Clinician requests drain the member re-wrap queue in their background (key hierarchy 7).

Only a session holding the physician role key can re-seal a member's history after a password
reset, and nothing on the server may hold that key on its own: so the work rides on the
requests of clinicians who are signed in anyway. After a successful (status below 400)
clinician API or console conversation request whose session holds the physician key, up to
``MEDCHAT_REWRAP_BATCH`` requests are drained in the same unit of work, just before it commits
(this ``after_request`` step runs before ``http_transaction``'s commit, which was registered
first). It runs inside a SAVEPOINT (``RewrapQueue.drain_quietly``): a failure is logged and
rolled back, and the clinician's own answer is unchanged. A batch of 0 turns this off (then
only ``medchat keys rewrap`` drains).

Sign-in, enrollment and logout pages are left out: their session is starting or ending.
"""

from __future__ import annotations

from flask import Flask, Response, g, request

from access_control.roles import Role
from medchat.keys.member_rewrap import RewrapQueue
from medchat.models import KeyRole
from medchat.web.context import runtime
from medchat.web.guard import loaded_principal

#: Where a clinician works with conversations (API and console).
CLINICIAN_PATHS = (
    "/api/v1/clinician/",
    "/console/queue",
    "/console/conversations/",
    "/console/attachments/",
)


def _drain_after_request(response: Response) -> Response:
    if response.status_code >= 400 or not request.path.startswith(CLINICIAN_PATHS):
        return response
    session = g.get("db")
    limit = runtime().settings.rewrap_batch
    if session is None or limit <= 0:
        return response
    principal = loaded_principal()
    if principal is None or principal.role != Role.CLINICIAN:
        return response
    if not principal.keyring.holds_role(KeyRole.PHYSICIAN):
        return response
    RewrapQueue(session, runtime()).drain_quietly(principal, limit)
    return response


def init_app(app: Flask) -> None:
    """Register after ``http_transaction.init_app`` so the drain runs before the commit."""
    app.after_request(_drain_after_request)
