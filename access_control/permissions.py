"""The permission table: ``<scope>:<resource>:<action>`` granted per role, checked in one place.

Every API view declares the permission it needs (``medchat.api.guard.requires``); the app
refuses to start if a route under ``/api`` declares none, and the authorization-matrix test
walks ``app.url_map`` against this table. Checks raise; they never return a bool to forget.
"""

from __future__ import annotations

import enum

from access_control.errors import Forbidden, MfaSessionRequired, NotAuthenticated
from access_control.roles import Role


class Permission(enum.StrEnum):
    # Anyone, signed in or not (health, registration, login).
    PUBLIC = "public"
    # Any signed-in account acting on itself (logout, password, own 2FA).
    SELF_MANAGE = "account:self:manage"
    MEMBER_PROFILE = "member:profile:read"
    MEMBER_CONVERSATIONS = "member:conversation:use"
    # The member's data rights (docs/data-rights.md): rectify, export, access log, erase,
    # restrict and object.
    MEMBER_PROFILE_UPDATE = "member:profile:update"
    MEMBER_EXPORT = "member:data:export"
    MEMBER_ACCESS_LOG = "member:access-log:read"
    MEMBER_ACCOUNT_DELETE = "member:account:delete"
    MEMBER_RESTRICTION = "member:processing:restrict"
    CLINICIAN_CONVERSATIONS = "clinician:conversation:use"
    CLINICIAN_GRANT = "clinician:role-key:grant"
    COMPLIANCE_ARCHIVE = "compliance:archive:use"
    COMPLIANCE_GRANT = "compliance:archive-key:grant"
    ADMIN_ACCOUNTS = "admin:account:manage"
    ADMIN_AUDIT = "admin:audit:read"
    # The data protection officer acting for a member on a mailed request (docs/security.md,
    # "The data protection officer").
    DPO_REQUESTS = "dpo:member-request:act"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.MEMBER: frozenset(
        {
            Permission.SELF_MANAGE,
            Permission.MEMBER_PROFILE,
            Permission.MEMBER_CONVERSATIONS,
            Permission.MEMBER_PROFILE_UPDATE,
            Permission.MEMBER_EXPORT,
            Permission.MEMBER_ACCESS_LOG,
            Permission.MEMBER_ACCOUNT_DELETE,
            Permission.MEMBER_RESTRICTION,
        }
    ),
    Role.CLINICIAN: frozenset(
        {Permission.SELF_MANAGE, Permission.CLINICIAN_CONVERSATIONS, Permission.CLINICIAN_GRANT}
    ),
    Role.COMPLIANCE: frozenset(
        {Permission.SELF_MANAGE, Permission.COMPLIANCE_ARCHIVE, Permission.COMPLIANCE_GRANT}
    ),
    Role.ADMIN: frozenset(
        {Permission.SELF_MANAGE, Permission.ADMIN_ACCOUNTS, Permission.ADMIN_AUDIT}
    ),
    Role.DPO: frozenset({Permission.SELF_MANAGE, Permission.DPO_REQUESTS}),
}


def has_permission(role: str, permission: Permission) -> bool:
    if permission is Permission.PUBLIC:
        return True
    return permission in ROLE_PERMISSIONS.get(Role(role), frozenset())


def require(
    role: str | None, permission: Permission, *, mfa_verified: bool, mfa_needed: bool
) -> None:
    """Raise unless a caller with ``role`` may use ``permission``.

    ``NotAuthenticated`` without a caller, ``MfaSessionRequired`` for a role that needs 2FA on a
    session that did not pass it, ``Forbidden`` for a role without the permission.
    """
    if permission is Permission.PUBLIC:
        return
    if role is None:
        raise NotAuthenticated
    if mfa_needed and not mfa_verified:
        raise MfaSessionRequired
    if not has_permission(role, permission):
        raise Forbidden
