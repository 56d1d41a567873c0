"""A member corrects their e-mail address (the right to rectification, docs/data-rights.md).

Asking (``request``) takes the password as a step-up (``AuthenticationService.step_up``:
counted like a sign-in, 401 when wrong), so a stolen access token alone cannot move the
account to an address its thief reads. The answer never says whether the new address is
taken: both branches generate and hash a token, compose one mail and write one audit entry.
A free address gets a row holding the token's hash and the address sealed under the profile
key (``medchat.keys.personal_data``; nothing in clear until it is confirmed) and a mail carrying the
token; a taken address gets a mail saying that it already belongs to an account and that
nothing changed, and no row. Only the newest request works: asking again spends the older
ones. Staff accounts are refused: an admin changes a staff address, as for their passwords.

Confirming (``confirm``) is done by the same member, signed in, with the token from the new
mailbox: that proves the address is theirs. The token must be live (30 minutes, the setting of
password resets, ``MEDCHAT_PASSWORD_RESET_MINUTES``) and is spent by a conditional update (of
two racing confirmations one wins). The account's ``email_ciphertext`` and blind index
``email_index`` change together, through the ORM, so the account row's tag is renewed in the
same transaction; the old address is told by mail. Sessions are kept: the address names the
account but signs nothing in (the password and second factor are unchanged), and the change
needed the password already; the notice to the old address is what a stolen session cannot
silence.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from access_control import crypto
from access_control.roles import Role
from medchat import audit
from medchat.errors import EmailTaken, Forbidden, InvalidEmailChangeToken
from medchat.identity import single_use
from medchat.identity.principal import Principal
from medchat.models import Account, AccountStatus, EmailChangeToken
from medchat.services.accounts import AccountService
from medchat.services.authentication import AuthenticationService
from medchat.services.context import ServiceContext
from medchat.services.mail import compose, deliver_after_commit

REQUEST_ACTION = "account.email_change_request"
CHANGE_ACTION = "account.email_change"
#: The sealed field of a pending address: not ``email``, so it never opens as the account's.
PENDING_FIELD = "pending_email"
TOKEN_PREFIX = "mce_"  # noqa: S105  # nosec B105  # a prefix, not a secret
CONFIRM_SUBJECT = "Confirm your new medchat e-mail address"
TAKEN_SUBJECT = "Your medchat e-mail address was not changed"
NOTICE_SUBJECT = "Your medchat e-mail address was changed"
STAFF_REFUSAL = "Staff accounts ask an admin to change their e-mail address."


def confirm_text(first_name: str, token: str, minutes: int) -> str:
    return (
        f"Hello {first_name},\n\n"
        "someone asked to use this address for a medchat account. To confirm it, enter this\n"
        f"code in the medchat app, signed in, within {minutes} minutes. It works once.\n\n"
        f"email_token: {token}\n\n"
        "If you did not ask for this, ignore this message: nothing changes.\n"
    )


def taken_text() -> str:
    """No greeting: the asker is not the owner of this address, and is not named to them."""
    return (
        "Hello,\n\n"
        "someone asked to use this address for a medchat account, but it already belongs to\n"
        "a medchat account, so nothing was changed. If it was you, sign in with this address\n"
        "instead; if not, ignore this message.\n"
    )


def notice_text(first_name: str) -> str:
    return (
        f"Hello {first_name},\n\n"
        "the e-mail address of your medchat account was changed: from now on you sign in\n"
        "with the new address, and mail from medchat goes there.\n\n"
        "If this was not you, contact medchat support at once.\n"
    )


class EmailChangeService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime
        self.accounts = AccountService(session, runtime)
        self.profiles = runtime.profiles

    def request(self, actor: Principal, password: str, new_email: str, *, address: str) -> None:
        """Mail a confirmation token to ``new_email``, or a "taken" notice; same answer."""
        account = self._member(actor)
        AuthenticationService(self.session, self.runtime).step_up(
            account, password, address=address, action=REQUEST_ACTION, subject_id=account.id
        )
        new_email = new_email.strip()
        token = TOKEN_PREFIX + crypto.random_token()
        token_hash = crypto.token_hash(token)
        now = self.runtime.clock.now()
        taken = self.accounts.find_by_email(new_email) is not None
        if taken:
            self._mail(new_email, TAKEN_SUBJECT, taken_text(), now)
        else:
            single_use.issue(
                self.session,
                EmailChangeToken,
                account.id,
                token_hash,
                now=now,
                lifetime=self.runtime.settings.password_reset_ttl,
                new_email_ciphertext=self.profiles.seal(account.id, PENDING_FIELD, new_email),
            )
            minutes = self.runtime.settings.password_reset_minutes
            body = confirm_text(self.accounts.first_name_of(account), token, minutes)
            self._mail(new_email, CONFIRM_SUBJECT, body, now)
        audit.record(
            self.session,
            REQUEST_ACTION,
            target_type="account",
            target_id=account.id,
            subject_id=account.id,
            outcome="address_taken" if taken else "success",
        )

    def confirm(self, actor: Principal, token: str) -> None:
        """Set the pending address of a live token of this member; tell the old address.

        Raises ``InvalidEmailChangeToken`` (spent, expired, unknown, or another account's) and
        ``EmailTaken`` (the address was registered since the request); neither spends it.
        """
        account = self._member(actor)
        record = self._live_token(account, token)
        now = self.runtime.clock.now()
        new_email = self.profiles.open(account.id, PENDING_FIELD, record.new_email_ciphertext)
        new_index = self.profiles.email_index(new_email)
        holder = self.session.scalar(select(Account.id).where(Account.email_index == new_index))
        if holder is not None:
            raise self._refuse(EmailTaken(), account)
        if not single_use.redeem(self.session, EmailChangeToken, record, now):
            raise self._refuse(InvalidEmailChangeToken(), account)
        old_email = self.accounts.email_of(account)
        # Through the ORM, both columns at once: the row's tag is renewed on this flush.
        account.email_index = new_index
        account.email_ciphertext = self.profiles.seal(account.id, "email", new_email)
        self.session.flush()
        self._mail(
            old_email, NOTICE_SUBJECT, notice_text(self.accounts.first_name_of(account)), now
        )
        audit.record(
            self.session,
            CHANGE_ACTION,
            target_type="account",
            target_id=account.id,
            subject_id=account.id,
        )

    # -- steps ---------------------------------------------------------------------------

    def _member(self, actor: Principal) -> Account:
        if actor.role != Role.MEMBER:
            raise Forbidden(STAFF_REFUSAL)
        return actor.account

    def _live_token(self, account: Account, token: str) -> EmailChangeToken:
        found = single_use.find(self.session, EmailChangeToken, token)
        if found is None or found[0].account_id != account.id:
            raise self._refuse(InvalidEmailChangeToken(), account)
        record = found[0]
        live = single_use.is_live(record, self.runtime.clock.now())
        if not live or account.status != AccountStatus.ACTIVE:
            raise self._refuse(InvalidEmailChangeToken(), account)
        return record

    def _mail(self, to: str, subject: str, body: str, now: datetime) -> None:
        deliver_after_commit(self.session, self.runtime.postman, compose(to, subject, body, at=now))

    def _refuse(self, error: Exception, account: Account) -> Exception:
        """Audit a refused confirmation after the rollback (ids and codes only)."""
        audit.record_on_rollback(
            self.session,
            CHANGE_ACTION,
            target_type="account",
            target_id=account.id,
            subject_id=account.id,
            outcome="failure",
            details={"code": getattr(error, "code", "error")},
        )
        return error
