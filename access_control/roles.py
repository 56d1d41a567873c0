"""Roles: exactly one per account, so nobody is admin and clinician at once.

SECURITY-MODEL "Who uses it": staff roles (clinician, compliance, admin, dpo) must use TOTP and
reach their surfaces from allowed networks only; members may opt into TOTP.
"""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    MEMBER = "member"
    CLINICIAN = "clinician"
    COMPLIANCE = "compliance"
    ADMIN = "admin"
    #: The data protection officer: acts for a member on a request received by mail (export
    #: notice, erasure, restriction, rectification); holds no key and reads no content.
    DPO = "dpo"


STAFF_ROLES = frozenset({Role.CLINICIAN, Role.COMPLIANCE, Role.ADMIN, Role.DPO})


def is_staff(role: str) -> bool:
    """Staff accounts are created by an admin and must use 2FA."""
    return role in STAFF_ROLES


def requires_mfa(role: str) -> bool:
    """TOTP is mandatory for every staff role (SECURITY-MODEL "Authentication")."""
    return is_staff(role)
