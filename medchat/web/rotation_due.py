"""The ``Medchat-Rotation-Due`` header: a revocation tells the caller a rotation is now due.

SECURITY-MODEL key hierarchy 11: each revocation (a grant revoked, an account disabled)
schedules a role-key rotation. The response says which role keys it concerns, so the person
who revoked knows to run ``medchat keys rotate`` (``medchat keys status`` shows it too).
"""

from __future__ import annotations

ROTATION_DUE_HEADER = "Medchat-Rotation-Due"


def rotation_due_headers(roles: list[str]) -> dict[str, str]:
    """``{"Medchat-Rotation-Due": "archive, physician"}``, or nothing when no key is due."""
    return {ROTATION_DUE_HEADER: ", ".join(sorted(roles))} if roles else {}
