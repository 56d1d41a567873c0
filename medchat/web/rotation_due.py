"""The ``Medchat-Rotation-Due`` header: staff are told a role key's rotation is due.

SECURITY-MODEL key hierarchy 11: each revocation (a grant revoked, an account disabled)
schedules a role-key rotation. The response says which role keys it concerns, so the person
who revoked knows to run ``medchat keys rotate`` (``medchat keys status`` shows it too).

Until the rotation's deadline (``medchat.keys.rotation_deadline``) content is still sealed to the
key, and every staff answer of a request that sealed some carries the header as well, so the
holders working in the service see it before the deadline refuses new content (the refusal,
``503 rotation_overdue``, carries it too). Members are not told: the state of the staff's keys
is not theirs to know.
"""

from __future__ import annotations

from flask import Flask, Response, g

from access_control.roles import Role
from medchat.keys.rotation_deadline import DUE_INFO
from medchat.web.guard import current_principal

ROTATION_DUE_HEADER = "Medchat-Rotation-Due"


def rotation_due_headers(roles: list[str]) -> dict[str, str]:
    """``{"Medchat-Rotation-Due": "archive, physician"}``, or nothing when no key is due."""
    return {ROTATION_DUE_HEADER: ", ".join(sorted(roles))} if roles else {}


def _due_after_request(response: Response) -> Response:
    session = g.get("db")
    roles = session.info.get(DUE_INFO) if session is not None else None
    if not roles or ROTATION_DUE_HEADER in response.headers:
        return response
    principal = current_principal()
    if principal is None or principal.role == Role.MEMBER:
        return response
    response.headers.update(rotation_due_headers(sorted(roles)))
    return response


def init_app(app: Flask) -> None:
    """Register after ``http_transaction.init_app``: it runs before the commit pops the
    session."""
    app.after_request(_due_after_request)
