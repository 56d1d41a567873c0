"""Signing in and out: password, second factor, token families, password changes.

Wrong e-mail and wrong password give the same answer (``invalid_credentials``) after the same
bcrypt work. Roles that need 2FA get ``mfa_required`` until a code comes with the password, or
``mfa_enrollment_required`` with a fresh enrollment token if they never finished enrolling.
Failed sign-ins are audited even though the request fails (``audit.record_on_rollback``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from access_control import totp
from access_control.password_kdf import Password
from access_control.passwords import check_strength
from access_control.roles import is_staff, requires_mfa
from access_control.tokens import TokenPair, TokenStore
from medchat import audit
from medchat.db import on_rollback
from medchat.errors import (
    InvalidCredentials,
    InvalidMfaCode,
    MfaEnrollmentRequired,
    MfaRequired,
)
from medchat.models import Account, AccountStatus, AuthToken
from medchat.runtime import Runtime
from medchat.services.accounts import AccountService, new_enrollment_token
from medchat.services.token_purge import purge_account


@dataclass(frozen=True, repr=False)
class SignIn:
    tokens: TokenPair
    account: Account


class AuthenticationService:
    def __init__(self, session: Session, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        self.accounts = AccountService(session, runtime)

    def _tokens(self) -> TokenStore:
        return TokenStore(
            self.session,
            self.runtime.clock.now(),
            keyring_secret=self.runtime.keys.session_keyring,
        )

    def _fail(self, action: str, account: Account | None, exc: Exception) -> Exception:
        audit.record_on_rollback(
            self.session,
            action,
            target_type="account" if account else None,
            target_id=account.id if account else None,
            outcome="failure",
        )
        return exc

    def check_password(self, email: str, password: str | Password) -> Account:
        """The active (or enrolling) account with this password, or ``InvalidCredentials``.

        Every sign-in (API, console, CLI) passes here first: the account's own expired token
        rows are deleted now (bounded, ``token_purge.purge_account``), not left for the daily
        run alone. A hash of an older format or other costs is replaced now, from the scrypt
        run the check just did (``PasswordHasher.needs_upgrade``); pass a ``Password`` on to
        ``open_keyring`` and the personal key follows it without another scrypt run.
        """
        hasher = self.runtime.hasher
        account = self.accounts.find_by_email(email)
        ok = hasher.verify(password, account.password_hash if account else None)
        if not ok or account is None or account.status == AccountStatus.DISABLED:
            raise self._fail("auth.login", account, InvalidCredentials())
        if account.password_hash is not None and hasher.needs_upgrade(account.password_hash):
            account.password_hash = hasher.hash(password)
            audit.record(
                self.session, "auth.password_upgrade", target_type="account", target_id=account.id
            )
        purge_account(self.session, account.id, self.runtime.clock.now())
        return account

    def check_second_factor(self, account: Account, code: str | None) -> bool:
        """Enforce 2FA where the role or the member's own choice asks for it.

        Returns whether the session passed a second factor. Raises ``MfaEnrollmentRequired``
        (carrying a fresh enrollment token in ``details``), ``MfaRequired`` or
        ``InvalidMfaCode``.
        """
        if requires_mfa(account.role) and not account.has_totp:
            token = new_enrollment_token()
            account_id, runtime = account.id, self.runtime

            # Kept although the request answers 403: the client needs the token it is handed.
            def _store(fresh: Session) -> None:
                AccountService(fresh, runtime).store_enrollment_token(account_id, token)
                audit.record(
                    fresh,
                    "auth.login",
                    target_type="account",
                    target_id=account_id,
                    outcome="mfa_enrollment_required",
                )

            on_rollback(self.session, _store)
            raise MfaEnrollmentRequired(details={"enrollment_token": token})
        if not account.has_totp:
            return False
        if not code:
            raise self._fail("auth.login_mfa_missing", account, MfaRequired())
        secret = self.accounts.totp_secret(account) or ""
        now = self.runtime.clock.now()
        if not totp.verify_second_factor(self.session, account, secret, code, now):
            raise self._fail("auth.login_mfa", account, InvalidMfaCode())
        return True

    def login(self, email: str, password: str, totp_code: str | None) -> SignIn:
        """Password, second factor, then the keys: one scrypt and one bcrypt run in all."""
        typed = Password(password)
        account = self.check_password(email, typed)
        mfa = self.check_second_factor(account, totp_code)
        if account.status != AccountStatus.ACTIVE:
            raise self._fail("auth.login", account, InvalidCredentials())
        keyring = self.runtime.custody(self.session).open_keyring(account.id, typed)
        pair = self._tokens().issue_pair(
            account.id,
            self.runtime.token_lifetimes(is_staff(account.role)),
            mfa_verified=mfa,
            keyring=None if keyring.is_empty else keyring,
        )
        audit.record(
            self.session,
            "auth.login",
            target_type="account",
            target_id=account.id,
            details={"mfa": mfa, "family": str(pair.family_id)},
        )
        return SignIn(pair, account)

    def refresh(self, refresh_token: str) -> SignIn:
        pair, account = self._tokens().rotate(
            refresh_token, lambda acc: self.runtime.token_lifetimes(is_staff(acc.role))
        )
        audit.record(
            self.session,
            "auth.refresh",
            target_type="account",
            target_id=account.id,
            details={"family": str(pair.family_id)},
        )
        return SignIn(pair, account)

    def logout(self, token: AuthToken) -> None:
        self._tokens().revoke_family(token.family_id)
        audit.record(self.session, "auth.logout", target_type="account", target_id=token.account_id)

    def change_password(self, account: Account, token: AuthToken, current: str, new: str) -> None:
        """Change the password and end every other session of the account."""
        typed = Password(current)
        if not self.runtime.hasher.verify(typed, account.password_hash):
            raise self._fail("auth.password_change", account, InvalidCredentials())
        check_strength(new, self.accounts.personal_data(account))
        chosen = Password(new)  # one scrypt run for the new hash and the re-sealed key
        custody = self.runtime.custody(self.session)
        if custody.personal_key(account.id) is not None:
            custody.reseal_personal_key(account.id, typed, chosen)
        account.password_hash = self.runtime.hasher.hash(chosen)
        account.password_changed_at = self.runtime.clock.now()
        self._tokens().revoke_account(account.id, keep_family=token.family_id)
        audit.record(
            self.session, "auth.password_change", target_type="account", target_id=account.id
        )
