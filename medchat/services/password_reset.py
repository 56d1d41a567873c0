"""Forgotten passwords of members: a mailed single-use token, a new keypair, a re-wrap queue.

SECURITY-MODEL "Authentication" (forgotten password) and key hierarchy 7; API.md
``/auth/password-reset`` and ``/confirm``.

Asking (``request``) must not tell who is a member. Every address gets the same answer, and
both branches do the same kind of work: one blind-index lookup, one token generated and hashed,
one audit entry. Only an active member's branch stores the hash and composes a mail; the mail is
handed to the postman after the transaction commits and delivered on its background thread
(``medchat.services.mail``), so neither branch waits on SMTP, and neither hashes a password. Staff
accounts get nothing here: their passwords are reset by an admin (``staff_reset``).

Confirming (``confirm``) spends the token only if everything else passes (any failure rolls
the whole unit of work back, the token included): the token must be live, a member with TOTP
must give a fresh code or an unused recovery code, and the password must pass the policy. Then
the password hash is new, the personal keypair is new (the old one retires: what it opened is
lost with the old password, and its row is deleted at once, since nothing is sealed to it any
more), every session ends, the member's conversations are queued for a clinician session to
re-seal (``rewrap``), and a notice is mailed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from access_control import crypto
from access_control.password_kdf import Password
from access_control.passwords import check_strength
from access_control.roles import Role
from medchat import audit
from medchat.errors import InvalidMfaCode, InvalidResetToken, MfaRequired
from medchat.identity import single_use
from medchat.identity.tokens import TokenStore
from medchat.keys.member_rewrap import RewrapQueue
from medchat.models import Account, AccountStatus, NotificationKind, PasswordResetToken
from medchat.services.accounts import AccountService
from medchat.services.authentication import AuthenticationService
from medchat.services.context import ServiceContext
from medchat.services.mail import compose, deliver_after_commit
from medchat.services.notifications import enqueue

RESET_PREFIX = "mcp_"
RESET_SUBJECT = "Your medchat password reset code"
NOTICE_SUBJECT = "Your medchat password was changed"


def new_reset_token() -> str:
    return RESET_PREFIX + crypto.random_token()


def reset_text(first_name: str, token: str, minutes: int) -> str:
    """The reset mail: a greeting by first name and the token; nothing else about anyone."""
    return (
        f"Hello {first_name},\n\n"
        "someone asked to reset the password of your medchat account. To choose a new\n"
        f"password, enter this code in the medchat app within {minutes} minutes. It works once.\n\n"
        f"reset_token: {token}\n\n"
        "If you did not ask for this, ignore this message: your password stays as it is.\n"
    )


def notice_text(first_name: str) -> str:
    """The notice after a reset: what happened, and what to do if it was not them."""
    return (
        f"Hello {first_name},\n\n"
        "your medchat password was changed and every device signed in to your account was\n"
        "signed out. Your earlier conversations become readable again in the app once your\n"
        "care team's next session has re-secured them for your new password.\n\n"
        "If you did not change your password, contact medchat support at once.\n"
    )


class PasswordResetService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime
        self.accounts = AccountService(session, runtime)

    def request(self, email: str) -> None:
        """Mail a reset token to an active member; for any other address do the same work,
        store nothing and mail nothing. Never raises for an unknown address."""
        account = self.accounts.find_by_email(email)
        token = new_reset_token()
        token_hash = crypto.token_hash(token)
        if account is None or account.role != Role.MEMBER or not account.is_active:
            audit.record(self.session, "auth.password_reset_request", outcome="ignored")
            return
        now = self.runtime.clock.now()
        single_use.issue(
            self.session,
            PasswordResetToken,
            account.id,
            token_hash,
            now=now,
            lifetime=self.runtime.settings.password_reset_ttl,
        )
        minutes = self.runtime.settings.password_reset_minutes
        self._mail(
            account,
            RESET_SUBJECT,
            reset_text(self.accounts.first_name_of(account), token, minutes),
            now,
        )
        audit.record(
            self.session,
            "auth.password_reset_request",
            target_type="account",
            target_id=account.id,
        )

    def confirm(self, reset_token: str, new_password: str, totp_code: str | None) -> None:
        """Set a new password with a live token (see the module docstring for the order).

        Raises ``InvalidResetToken`` (spent, expired, unknown, or the account is no longer an
        active member), ``MfaRequired`` / ``InvalidMfaCode`` for a member with TOTP, and
        ``WeakPassword``; none of them spends the token.
        """
        record, account = self._live_token(reset_token)
        now = self.runtime.clock.now()
        if account.has_totp:
            self._check_second_factor(account, totp_code)
        check_strength(new_password, self.accounts.personal_data(account))
        # Conditional: of two confirmations racing with one token, one wins.
        if not single_use.redeem(self.session, PasswordResetToken, record, now):
            raise self._refuse(InvalidResetToken())
        chosen = Password(new_password)  # one scrypt run for the hash and the sealed key
        account.password_hash = self.runtime.hasher.hash(chosen)
        account.password_changed_at = now
        custody = self.runtime.custody(self.session)
        key = custody.create_personal_key(account.id, chosen)
        TokenStore(self.session, now).revoke_account(account.id)
        queued = RewrapQueue(self.session, self.runtime).enqueue(account.id, key)
        # The wraps sealed to the old key went with the enqueue: its blob (which the old
        # password opens) goes now, not in some later database copy.
        custody.forget_retired(account.id)
        self._mail(account, NOTICE_SUBJECT, notice_text(self.accounts.first_name_of(account)), now)
        if queued:
            # Their history opens again once a doctor's session re-wraps it: say so then.
            enqueue(self.session, self.runtime, NotificationKind.HISTORY_PENDING, account.id)
        audit.record(
            self.session,
            "auth.password_reset",
            target_type="account",
            target_id=account.id,
            subject_id=account.id,
            details={"mfa": account.has_totp, "conversations_queued": queued},
        )

    # -- steps ---------------------------------------------------------------------------

    def _live_token(self, reset_token: str) -> tuple[PasswordResetToken, Account]:
        found = single_use.find(self.session, PasswordResetToken, reset_token)
        if found is None:
            raise self._refuse(InvalidResetToken())
        record, account = found
        live = single_use.is_live(record, self.runtime.clock.now())
        if not live or account.role != Role.MEMBER:
            raise self._refuse(InvalidResetToken(), account)
        if account.status != AccountStatus.ACTIVE:
            raise self._refuse(InvalidResetToken(), account)
        return record, account

    def _check_second_factor(self, account: Account, code: str | None) -> None:
        if not code:
            raise self._refuse(MfaRequired(), account)
        # The account's one second-factor budget, as at sign-in (``verify_code``).
        if not AuthenticationService(self.session, self.runtime).verify_code(account, code):
            raise self._refuse(InvalidMfaCode(), account)

    def _mail(self, account: Account, subject: str, body: str, now: datetime) -> None:
        message = compose(self.accounts.email_of(account), subject, body, at=now)
        deliver_after_commit(self.session, self.runtime.postman, message)

    def _refuse(self, error: Exception, account: Account | None = None) -> Exception:
        """Audit a refused confirmation after the rollback (ids and codes only)."""
        audit.record_on_rollback(
            self.session,
            "auth.password_reset",
            target_type="account" if account else None,
            target_id=account.id if account else None,
            outcome="failure",
            details={"code": getattr(error, "code", "error")},
        )
        return error
