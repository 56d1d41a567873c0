"""Staff reset: a forgotten password or a lost TOTP device, without an admin ever holding either.

SECURITY-MODEL "Authentication" and key hierarchy 7, 11; API.md
``POST /api/v1/admin/accounts/{id}/reset``. The admin never chooses or sees a password: the
account is put back to the state of a new one (no password, no TOTP seed, no recovery codes,
status ``pending``) and the admin gets a fresh one-time enrollment token to hand over. Every
session of the account ends at once and its role-key grants are deleted: they are sealed to
a personal key that re-enrollment replaces, and whoever holds the old password and a copy of
the database could still open them, so the role keys it held are marked for rotation
(``KeyCustody.mark_rotation_due``). A colleague re-grants the role key after re-enrollment.

Refused with 409 ``conflict``: members (they reset their own password by mail, which keeps
their history through the re-wrap queue; an admin reset of a member would hand an admin a way
into a member's account), disabled accounts (disabling is final), and the admin's own
account (someone else must vouch for a reset; otherwise a stolen admin session could lock
its owner out and enroll a device of its own).
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete
from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat import audit
from medchat.errors import Conflict
from medchat.identity.principal import Principal
from medchat.identity.tokens import TokenStore
from medchat.models import AccountStatus, KeyRole, RecoveryCode
from medchat.services.accounts import AccountService
from medchat.services.context import ServiceContext
from medchat.services.rotation_notices import mark_rotation_due

ROTATION_REASON = "staff_reset"


class StaffResetService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime
        self.accounts = AccountService(session, runtime)

    def reset(self, actor: Principal, account_id: uuid.UUID) -> str:
        """Clear the account's credentials and return its new enrollment token (shown once).

        Raises ``NotFound`` for an unknown id and ``Conflict`` for a member, a disabled
        account or the caller's own account.
        """
        account = self.accounts.get(account_id)
        if account.role == Role.MEMBER:
            raise Conflict("Members reset their own password by mail; an admin cannot.")
        if account.status == AccountStatus.DISABLED:
            raise Conflict("This account is disabled; disabling is final.")
        if account.id == actor.id:
            raise Conflict("Another admin must reset your account.")
        now = self.runtime.clock.now()
        account.forget_sign_in_secrets()
        account.password_changed_at = now
        account.status = AccountStatus.PENDING
        self.session.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account.id))
        TokenStore(self.session, now).revoke_account(account.id)
        custody = self.runtime.custody(self.session)
        held = custody.granted_roles(account.id)
        revoked = custody.revoke_grants(account.id)
        for role in held:
            mark_rotation_due(
                self.session, self.runtime, KeyRole(role), ROTATION_REASON, lost=account.id
            )
        token = self.accounts.issue_enrollment_token(account)
        audit.record(
            self.session,
            "account.reset",
            target_type="account",
            target_id=account.id,
            details={"role": account.role, "grants_revoked": revoked, "rotation_due": held},
        )
        return token
