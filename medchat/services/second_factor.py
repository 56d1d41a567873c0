"""A signed-in account's own second factor: turning it on, and (members) off again.

Issue 12, item 1. A stolen access token used to turn TOTP on with a seed of the thief's; then
the real member's sign-in and mailed reset both asked for a code only the thief had, and
nobody could undo it. Now:

- **Turning it on** (``start``) needs the password in the same request (``step_up``); the
  confirmation then proves the new authenticator holds the seed handed to that request.
- **Turning it off** (``remove``, members only: staff must keep one) needs the password and a
  code of the current factor, or one of its recovery codes. **Changing** it is turning it off
  and on again, so both halves need the password.
- Each change is audited and mailed to the account (``medchat.services.notices``).

A member who lost their authenticator signs in (or resets by mail) with a recovery code, turns
the old factor off with the password and another recovery code, and enrolls the new device:
docs/security.md, runbook "A member lost their second factor".
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete
from sqlalchemy.orm import Session

from access_control.roles import requires_mfa
from medchat import audit
from medchat.errors import Conflict
from medchat.models import Account, RecoveryCode
from medchat.services.accounts import EnrollmentStart
from medchat.services.authentication import AuthenticationService
from medchat.services.context import ServiceContext
from medchat.services.notices import Notice, notify


class SecondFactorService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime
        self.auth = AuthenticationService(session, runtime)
        self.accounts = self.auth.accounts

    def start(self, account: Account, password: str, *, address: str) -> EnrollmentStart:
        """Begin TOTP enrollment after the password (an account with TOTP keeps it: 409)."""
        if account.has_totp:
            raise Conflict(
                "Two-factor sign-in is already set up; turn it off first to change devices."
            )
        self.auth.step_up(account, password, address=address, action="auth.mfa_start")
        return self.accounts.start_mfa(account)

    def confirm(self, account: Account, code: str, family_id: uuid.UUID) -> list[str]:
        """The first code of the new seed: TOTP is on, the account is told by mail."""
        codes = self.accounts.confirm_mfa(account, code, family_id)
        notify(
            self.session, self.runtime, account, self.accounts.email_of(account), Notice.MFA_ENABLED
        )
        return codes

    def remove(self, account: Account, password: str, code: str, *, address: str) -> None:
        """Turn a member's TOTP off: the password and a current or recovery code, both now."""
        if requires_mfa(account.role):
            raise Conflict(
                "Staff accounts must keep two-factor sign-in; an admin resets a lost device."
            )
        if not account.has_totp:
            raise Conflict("Two-factor sign-in is not set up for this account.")
        self.auth.step_up(account, password, address=address, action="auth.mfa_remove")
        self.auth.require_code(account, code, action="auth.mfa_remove")
        account.totp_secret_ciphertext = None
        account.totp_confirmed_at = None
        account.totp_last_step = None
        self.session.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account.id))
        notify(
            self.session, self.runtime, account, self.accounts.email_of(account), Notice.MFA_REMOVED
        )
        audit.record(self.session, "auth.mfa_remove", target_type="account", target_id=account.id)
