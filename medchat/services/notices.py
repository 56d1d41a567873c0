"""Security notices: a mail to the account whenever what signs it in changes (issue 12, item 1).

A stolen session that gets past the step-up (it needs the password) still cannot change a
password or a second factor silently: the owner's mailbox hears of it. The mail is handed to
the postman only once the change commits (``deliver_after_commit``), so a refused change mails
nothing. It names the change and greets by first name; nothing else about anyone.
"""

from __future__ import annotations

import enum

from sqlalchemy.orm import Session

from medchat.models import Account
from medchat.services.context import ServiceContext
from medchat.services.mail import compose, deliver_after_commit


class Notice(enum.StrEnum):
    PASSWORD_CHANGED = "password_changed"  # noqa: S105  # nosec B105  # a notice's name
    MFA_ENABLED = "mfa_enabled"
    MFA_REMOVED = "mfa_removed"


_TEXTS = {
    Notice.PASSWORD_CHANGED: (
        "Your medchat password was changed",
        "the password of your medchat account was changed, and every other device signed in\n"
        "to it was signed out.",
    ),
    Notice.MFA_ENABLED: (
        "Two-factor sign-in was turned on",
        "two-factor sign-in was turned on for your medchat account: signing in now asks for a\n"
        "code from an authenticator app.",
    ),
    Notice.MFA_REMOVED: (
        "Two-factor sign-in was turned off",
        "two-factor sign-in was turned off for your medchat account, and its recovery codes\n"
        "no longer work.",
    ),
}


def notice_text(first_name: str, notice: Notice) -> tuple[str, str]:
    """(subject, body) of a notice: what happened and what to do if it was not them."""
    subject, what = _TEXTS[notice]
    body = (
        f"Hello {first_name},\n\n{what}\n\n"
        "If this was not you, reset your password at once and contact medchat support.\n"
    )
    return subject, body


def notify(
    session: Session, runtime: ServiceContext, account: Account, email: str, notice: Notice
) -> None:
    """Mail ``notice`` to ``email`` (the account's own address) once the change commits."""
    subject, body = notice_text(
        runtime.profiles.open(account.id, "first_name", account.first_name_ciphertext), notice
    )
    message = compose(email, subject, body, at=runtime.clock.now())
    deliver_after_commit(session, runtime.postman, message)
