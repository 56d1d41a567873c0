"""One role per account, and the permission table checked in one place."""

from __future__ import annotations

import pytest

from access_control.permissions import ROLE_PERMISSIONS, Permission, has_permission, require
from access_control.roles import Role, requires_mfa
from medchat.errors import Forbidden, MfaSessionRequired, NotAuthenticated


def test_staff_roles_require_mfa_and_members_do_not():
    assert {r for r in Role if requires_mfa(r)} == {
        Role.CLINICIAN,
        Role.COMPLIANCE,
        Role.ADMIN,
        Role.DPO,
    }


def test_admins_hold_no_content_permission():
    content = {
        Permission.MEMBER_CONVERSATIONS,
        Permission.CLINICIAN_CONVERSATIONS,
        Permission.COMPLIANCE_ARCHIVE,
        Permission.CLINICIAN_GRANT,
        Permission.COMPLIANCE_GRANT,
    }
    assert not ROLE_PERMISSIONS[Role.ADMIN] & content


def test_each_non_public_permission_belongs_to_exactly_the_roles_listed():
    for permission in Permission:
        if permission in (Permission.PUBLIC, Permission.SELF_MANAGE):
            continue
        holders = [role for role in Role if has_permission(role, permission)]
        assert len(holders) == 1, (permission, holders)


def test_require_raises_for_anonymous_wrong_role_and_missing_mfa():
    with pytest.raises(NotAuthenticated):
        require(None, Permission.MEMBER_PROFILE, mfa_verified=False, mfa_needed=False)
    with pytest.raises(Forbidden):
        require(Role.ADMIN, Permission.CLINICIAN_CONVERSATIONS, mfa_verified=True, mfa_needed=True)
    with pytest.raises(MfaSessionRequired):
        require(
            Role.CLINICIAN, Permission.CLINICIAN_CONVERSATIONS, mfa_verified=False, mfa_needed=True
        )
    require(Role.CLINICIAN, Permission.CLINICIAN_CONVERSATIONS, mfa_verified=True, mfa_needed=True)
    require(None, Permission.PUBLIC, mfa_verified=False, mfa_needed=False)
