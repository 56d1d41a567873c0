"""Signing in and out: password, second factor, failure budgets, token families, step-up.

Wrong e-mail and wrong password give the same answer (``invalid_credentials``) after the same
bcrypt work, and so does a staff account's right password from outside the staff networks
(``MEDCHAT_STAFF_NETWORKS``): a sign-in from there cannot even learn that a password is right.
Roles that need 2FA get ``mfa_required`` until a code comes with the password, or
``mfa_enrollment_required`` with a fresh enrollment token if they never finished enrolling.
Failed sign-ins are audited even though the request fails (``audit.record_on_rollback``).

Failures are counted per account and client address, per account, and per second factor
(``access_control.sign_in_limits``, which says why); a locked account still lets in the right
password and a valid code given together. ``step_up`` asks for the password again before a
signed-in session changes what signs the account in, revokes a role key or erases the account.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from access_control.networks import in_networks
from access_control.password_kdf import Password
from access_control.passwords import check_strength
from access_control.roles import is_staff, requires_mfa
from medchat import audit
from medchat.db import on_rollback
from medchat.errors import (
    InvalidCredentials,
    InvalidMfaCode,
    MfaEnrollmentRequired,
    MfaRequired,
    NetworkNotAllowed,
)
from medchat.identity import totp
from medchat.identity.tokens import SignInOrigin, TokenPair, TokenStore
from medchat.models import Account, AccountStatus, AuthToken
from medchat.services.accounts import AccountService, new_enrollment_token
from medchat.services.context import ServiceContext
from medchat.services.notices import Notice, notify
from medchat.services.notifications import note_device
from medchat.services.token_purge import purge_account


@dataclass(frozen=True, repr=False)
class SignIn:
    tokens: TokenPair
    account: Account


@dataclass(frozen=True, repr=False)
class Authenticated:
    account: Account
    #: Whether a second factor passed; None when it is asked for in a step of its own.
    mfa: bool | None


class AuthenticationService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime
        self.accounts = AccountService(session, runtime)
        self.limits = runtime.sign_in_limits

    def _tokens(self) -> TokenStore:
        return TokenStore(
            self.session,
            self.runtime.clock.now(),
            keyring_secret=self.runtime.keys.session_keyring,
        )

    def _fail(
        self,
        action: str,
        account: Account | None,
        exc: Exception,
        reason: str | None = None,
        subject_id: uuid.UUID | None = None,
    ) -> Exception:
        audit.record_on_rollback(
            self.session,
            action,
            target_type="account" if account else None,
            target_id=account.id if account else None,
            subject_id=subject_id,
            outcome="failure",
            details={"reason": reason} if reason else None,
        )
        return exc

    def check_password(
        self, email: str, password: str | Password, *, address: str | None
    ) -> Account:
        """The active (or enrolling) account with this password, or ``InvalidCredentials``.

        ``address`` is the client's; None only for the CLI on the host. A staff account's
        password from outside the staff networks fails after the same work with the same
        error as a wrong one (audited with ``reason: network``). Every sign-in (API, console,
        CLI) passes here first: the account's own expired token rows are deleted now
        (bounded, ``token_purge.purge_account``), not left for the daily run alone. A hash of
        an older format or other costs is replaced now, from the scrypt run the check just did
        (``PasswordHasher.needs_upgrade``); pass a ``Password`` on to ``open_keyring`` and the
        personal key follows it without another scrypt run.
        """
        # A slot of the process's password work first (``access_control.password_work``):
        # under a flood the refusal (503) comes before any lookup, alike for every address.
        with self.runtime.password_work.reserved():
            # Nothing in the session yet that a rollback could undo (``_end_the_lookup``): the
            # session begins at its first read, added object or changed attribute alike.
            first = not self.session.in_transaction()
            account = self.accounts.find_by_email(email)
            checked = account.password_hash if account is not None else None
            if first:
                # Read again by id after the hash, an unknown address too (an id no row has):
                # the same statements either way.
                account_id = account.id if account is not None else uuid.uuid4()
                self._end_the_lookup(account)
            ok = self.runtime.hasher.verify(password, checked)
        if first:
            account = self.session.get(Account, account_id)
            if account is not None and account.password_hash != checked:
                ok = False  # changed while the hash ran: the password checked is not its own
        if not ok or account is None or account.status == AccountStatus.DISABLED:
            raise self._fail("auth.login", account, InvalidCredentials())
        hasher = self.runtime.hasher
        outside = address is not None and not in_networks(
            address, self.runtime.settings.staff_networks
        )
        if outside and is_staff(account.role):
            raise self._fail("auth.login", account, InvalidCredentials(), reason="network")
        if account.password_hash is not None and hasher.needs_upgrade(account.password_hash):
            account.password_hash = hasher.hash(password)
            audit.record(
                self.session, "auth.password_upgrade", target_type="account", target_id=account.id
            )
        purge_account(self.session, account.id, self.runtime.clock.now())
        return account

    def _end_the_lookup(self, account: Account | None) -> None:
        """End the transaction the lookup alone opened, before the hash runs.

        The hash takes a quarter of a second of CPU, and seconds beside a flood (its thread at
        ``nice`` +10): a connection left idle in transaction meanwhile holds a pool slot and the
        ``accounts`` table's ``ACCESS SHARE`` lock, which a migration's ``ACCESS EXCLUSIVE``
        queues behind, and every token check behind that (bench/README.md, "Two more full
        runs"). Called only when the lookup was the transaction's only statement and nothing in
        the session was changed before it, so nothing is undone; the account is read again
        once the hash is done.
        """
        self.session.rollback()
        if account is not None:
            self.session.expunge(account)

    def authenticate(
        self,
        email: str,
        password: str | Password,
        code: str | None,
        *,
        address: str,
        code_follows: bool = False,
    ) -> Authenticated:
        """Password and (where needed) second factor, within the failure budgets.

        ``code_follows``: the console asks for the code on a page of its own, so a right
        password without one returns ``mfa=None``; except on a locked account, which only
        the password and a code given together open (429 otherwise, whichever was wrong).
        """
        key = self.limits.account_key(self.runtime.profiles.email_index(email))
        refusal = self.limits.refusal(key, address)
        if refusal is not None:
            raise refusal
        locked = self.limits.locked(key)
        if locked is not None and not code:
            raise self._fail("auth.login", None, locked, reason="locked")
        try:
            account = self.check_password(email, password, address=address)
        except InvalidCredentials:
            self.limits.password_failed(key, address)
            if locked is not None:
                raise locked from None
            raise
        if locked is not None:
            # The same 429 whichever was wrong: a locked account is no password oracle.
            if not (account.has_totp and code and self.verify_code(account, code)):
                raise self._fail("auth.login", account, locked, reason="locked")
            return Authenticated(account, True)
        if code_follows and not code:
            return Authenticated(account, None)
        return Authenticated(account, self.check_second_factor(account, code))

    def check_second_factor(self, account: Account, code: str | None) -> bool:
        """Enforce 2FA where the role or the member's own choice asks for it.

        Returns whether the session passed a second factor. Raises ``MfaEnrollmentRequired``
        (carrying a fresh enrollment token in ``details``), ``MfaRequired``,
        ``InvalidMfaCode`` or ``RateLimited`` (the account's code budget is spent).
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
        self.require_code(account, code, action="auth.login_mfa")
        return True

    def require_code(self, account: Account, code: str, *, action: str) -> None:
        """``verify_code`` or ``InvalidMfaCode``, audited as ``action`` failed."""
        if not self.verify_code(account, code):
            raise self._fail(action, account, InvalidMfaCode())

    def verify_code(self, account: Account, code: str) -> bool:
        """Spend a TOTP or recovery code within the account's one second-factor budget.

        Every place that takes a code (sign-in, console, reset confirmation, removing the
        second factor, the CLI) comes here, so the budget is one per account. Raises
        ``RateLimited`` once it is spent, for right codes too.
        """
        key = self.limits.account_key(account.email_index)
        refusal = self.limits.code_refusal(key)
        if refusal is not None:
            raise refusal
        secret = self.accounts.totp_secret(account) or ""
        now = self.runtime.clock.now()
        if totp.verify_second_factor(self.session, account, secret, code, now):
            return True
        self.limits.code_failed(key)
        return False

    def step_up(
        self,
        account: Account,
        password: str | Password,
        *,
        address: str,
        action: str,
        subject_id: uuid.UUID | None = None,
    ) -> None:
        """The account's password again, in the very request that needs it.

        Asked before a signed-in session changes the password or the second factor, revokes
        a role key or erases the account: a stolen access token alone does none of these.
        Counted like a sign-in: refused (429) before any work once this address spent its
        budget for the account; a wrong password counts and is audited as ``action`` failed
        (401 ``invalid_credentials``), with ``subject_id`` the member whose data it touches.
        """
        key = self.limits.account_key(account.email_index)
        refusal = self.limits.refusal(key, address)
        if refusal is not None:
            raise refusal
        if not self.runtime.hasher.verify(password, account.password_hash):
            self.limits.password_failed(key, address)
            raise self._fail(action, account, InvalidCredentials(), "step_up", subject_id)

    def login(
        self,
        email: str,
        password: str,
        totp_code: str | None,
        *,
        address: str,
        origin: SignInOrigin | None = None,
    ) -> SignIn:
        """Password, second factor, then the keys: one scrypt and one bcrypt run in all.

        ``origin`` (device label, network MAC) is what the sign-in list shows of this one.
        """
        typed = Password(password)
        checked = self.authenticate(email, typed, totp_code, address=address)
        account, mfa = checked.account, bool(checked.mfa)
        if account.status != AccountStatus.ACTIVE:
            raise self._fail("auth.login", account, InvalidCredentials())
        keyring = self.runtime.custody(self.session).open_keyring(account.id, typed)
        pair = self._tokens().issue_pair(
            account.id,
            self.runtime.token_lifetimes(is_staff(account.role)),
            mfa_verified=mfa,
            keyring=None if keyring.is_empty else keyring,
            origin=origin,
        )
        note_device(
            self.session,
            self.runtime,
            account.id,
            origin.device if origin else None,
            pair.family_id,
        )
        audit.record(
            self.session,
            "auth.login",
            target_type="account",
            target_id=account.id,
            details={"mfa": mfa, "family": str(pair.family_id)},
        )
        return SignIn(pair, account)

    def refresh(self, refresh_token: str, *, address: str | None) -> SignIn:
        """A new pair for a live refresh token. A staff account's only from the staff
        networks, as its sign-in (refused in the rotation's transaction, so nothing is spent);
        ``address`` is ``None`` only off HTTP, as for ``check_password``."""
        pair, account = self._tokens().rotate(
            refresh_token, lambda acc: self.runtime.token_lifetimes(is_staff(acc.role))
        )
        outside = address is not None and not in_networks(
            address, self.runtime.settings.staff_networks
        )
        if outside and is_staff(account.role):
            raise self._fail("auth.refresh", account, NetworkNotAllowed(), reason="network")
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

    def change_password(
        self, account: Account, token: AuthToken, current: str, new: str, *, address: str
    ) -> None:
        """Change the password (the current one is the step-up), end every other session of
        the account, and mail the account that it happened."""
        typed = Password(current)
        self.step_up(account, typed, address=address, action="auth.password_change")
        check_strength(new, self.accounts.personal_data(account))
        chosen = Password(new)  # one scrypt run for the new hash and the re-sealed key
        # The hash first: its run (made within the bound on password work) seals the key too.
        account.password_hash = self.runtime.hasher.hash(chosen)
        custody = self.runtime.custody(self.session)
        if custody.personal_key(account.id) is not None:
            custody.reseal_personal_key(account.id, typed, chosen)
        account.password_changed_at = self.runtime.clock.now()
        self._tokens().revoke_account(account.id, keep_family=token.family_id)
        email = self.accounts.email_of(account)
        notify(self.session, self.runtime, account, email, Notice.PASSWORD_CHANGED)
        audit.record(
            self.session, "auth.password_change", target_type="account", target_id=account.id
        )
