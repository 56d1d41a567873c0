"""The data protection officer acts for a member on a request received by mail.

The privacy policy sends every data-rights request to the DPO's mailbox. The officer (role
``dpo``: a staff account with TOTP, from the staff networks, holding **no key**) acts on it
here with the request's ticket reference: an export, delivered to the member and never to the
officer; an erasure; a restriction, its lifting or an objection; a rectification of profile
fields. The officer names the member by e-mail address (the blind index finds the account)
and never sees content: no answer here carries a message, subject, attachment or profile
value, and the officer's session could not open one (no personal or role key).

- **Export**: the server cannot build it without the member's key, and mail is no place for
  health data, so the member is mailed that their export waits in the app
  (``GET /api/v1/me/export``); nothing of its content is in the mail.
- **Erasure**: exactly the member's own erasure (``AccountDeletionService.erase``), without
  their password: the ticket stands for the checked request.
- **Restriction, lifting, objection**: ``RestrictionService`` with ``by="dpo"``.
- **Rectification**: ``ProfileService.rectify_account`` under registration's rules.

Each act is audited with the member as subject and the ticket (``dpo.*``, and the entry of
the act itself: ``account.delete``, ``privacy.*``, ``profile.update``), and, but for an
erasure (the account is gone), shows in the member's access log as the data protection
officer's (``medchat.services.access_log``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat import audit
from medchat.errors import Forbidden, NotFound
from medchat.identity.principal import Principal
from medchat.models import Account, AccountStatus
from medchat.services.account_deletion import AccountDeletionService
from medchat.services.context import ServiceContext
from medchat.services.mail import compose, deliver_after_commit
from medchat.services.profiles import ProfileService
from medchat.services.restrictions import BY_DPO, RestrictionService, RestrictionState

EXPORT_SUBJECT = "Your medchat data export is ready in the app"
#: What each restriction request does (``/api/v1/dpo/restriction``).
RESTRICTION_ACTIONS = ("restrict", "lift", "object")


def export_notice_text(first_name: str, ticket: str) -> str:
    return (
        f"Hello {first_name},\n\n"
        f"you asked our data protection officer for a copy of your data (reference {ticket}).\n"
        "Your complete export is ready: sign in to the medchat app and open Privacy, Export\n"
        "(JSON, or FHIR for another health service). For your protection it is never sent by\n"
        "mail, and the officer never sees it.\n\n"
        "If you did not ask for this, write to the data protection officer.\n"
    )


class DpoService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime

    def _member(self, actor: Principal, email: str) -> Account:
        """The active member whose address this is, its row locked; ``NotFound`` otherwise
        (a staff account, a deleted one, or nobody), ``Forbidden`` for anyone but a DPO."""
        if actor.role != Role.DPO:
            raise Forbidden
        index = self.runtime.profiles.email_index(email.strip())
        account_id = self.session.scalar(
            select(Account.id).where(Account.email_index == index).with_for_update()
        )
        account = None if account_id is None else self.session.get(Account, account_id)
        if account is None or account.role != Role.MEMBER:
            raise NotFound
        if account.status != AccountStatus.ACTIVE:
            raise NotFound
        return account

    def _record(self, account: Account, request: str, ticket: str) -> None:
        audit.record(
            self.session,
            f"dpo.{request}",
            target_type="account",
            target_id=account.id,
            subject_id=account.id,
            details={"ticket": ticket},
        )

    def export(self, actor: Principal, email: str, ticket: str) -> None:
        """Tell the member by mail that their export waits in the app (no content mailed)."""
        account = self._member(actor, email)
        address = self.runtime.profiles.open(account.id, "email", account.email_ciphertext)
        now = self.runtime.clock.now()
        first_name = self.runtime.profiles.open(
            account.id, "first_name", account.first_name_ciphertext
        )
        body = export_notice_text(first_name or "", ticket)
        deliver_after_commit(
            self.session, self.runtime.postman, compose(address, EXPORT_SUBJECT, body, at=now)
        )
        self._record(account, "export_notice", ticket)

    def erase(self, actor: Principal, email: str, ticket: str) -> None:
        """Erase the member's account as their own request would."""
        account = self._member(actor, email)
        self._record(account, "erasure", ticket)
        AccountDeletionService(self.session, self.runtime).erase(account, ticket=ticket)

    def restriction(
        self, actor: Principal, email: str, ticket: str, action: str
    ) -> RestrictionState:
        """Restrict, lift or record an objection for the member."""
        account = self._member(actor, email)
        self._record(account, "restriction", ticket)
        restrictions = RestrictionService(self.session, self.runtime)
        if action == "restrict":
            return restrictions.restrict(account.id, by=BY_DPO, ticket=ticket)
        if action == "object":
            return restrictions.object(account.id, by=BY_DPO, ticket=ticket)
        restrictions.lift(account.id, by=BY_DPO, ticket=ticket)
        return restrictions.state(account.id)

    def rectify(
        self, actor: Principal, email: str, ticket: str, changes: dict[str, Any]
    ) -> list[str]:
        """Correct profile fields; the names of those changed (never their values)."""
        account = self._member(actor, email)
        self._record(account, "rectification", ticket)
        return ProfileService(self.session, self.runtime).rectify_account(
            account, changes, ticket=ticket
        )
