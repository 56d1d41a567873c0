"""Sign-ins and devices (issue 17, item 6): a person lists and ends their own sign-ins, and an
admin ends every sign-in of a staff account.

A sign-in is a token family (``identity.sign_ins`` says what the list shows and why it is
coarse). Ending one deletes its rows, so its access and refresh tokens stop at once, on every
host. Another account's sign-in answers 404 exactly like an unknown id: the id of someone
else's sign-in is not something a caller can learn exists.

An admin ends a staff account's sign-ins without touching its credentials (a lost laptop, a
shared screen left signed in); the heavier acts stay where they were: ``StaffResetService``
(credentials cleared, re-enrollment) and disabling. Members are refused (409), as for the
reset: an admin has no business in a member's account, and a member ends their own sign-ins.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat import audit
from medchat.errors import Conflict, NotFound
from medchat.identity.principal import Principal
from medchat.identity.sign_ins import SignInView, device_label, live_sign_ins, network_mac
from medchat.identity.tokens import SignInOrigin, TokenStore
from medchat.models import Account, AuthToken
from medchat.services.accounts import AccountService
from medchat.services.context import ServiceContext


def sign_in_origin(
    runtime: ServiceContext, user_agent: str | None, address: str | None
) -> SignInOrigin:
    """What a new sign-in records of where it came from (nothing that names a person)."""
    return SignInOrigin(
        device=device_label(user_agent), network=network_mac(runtime.keys.blind_index, address)
    )


class SignInService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime

    def _tokens(self) -> TokenStore:
        return TokenStore(self.session, self.runtime.clock.now())

    def live(self, account: Account, current: AuthToken, address: str | None) -> list[SignInView]:
        return live_sign_ins(
            self.session,
            account.id,
            self.runtime.clock.now(),
            current_family=current.family_id,
            network=network_mac(self.runtime.keys.blind_index, address),
        )

    def end(self, account: Account, family_id: uuid.UUID) -> None:
        """End one of the account's sign-ins (the current one too: that is a logout)."""
        owner = self.session.scalar(
            select(AuthToken.account_id).where(AuthToken.family_id == family_id).limit(1)
        )
        if owner != account.id:
            raise NotFound("No such sign-in.")
        self._tokens().revoke_family(family_id)
        audit.record(
            self.session,
            "auth.sign_in_end",
            target_type="account",
            target_id=account.id,
            details={"family": str(family_id)},
        )

    def end_others(self, account: Account, current: AuthToken) -> None:
        """End every sign-in of the account but the one making the request."""
        self._tokens().revoke_account(account.id, keep_family=current.family_id)
        audit.record(
            self.session,
            "auth.sign_in_end_others",
            target_type="account",
            target_id=account.id,
            details={"kept": str(current.family_id)},
        )

    def end_all_for_staff(self, actor: Principal, account_id: uuid.UUID) -> None:
        """An admin ends every sign-in of a staff account (404 unknown, 409 member or self)."""
        account = AccountService(self.session, self.runtime).get(account_id)
        if account.role == Role.MEMBER:
            raise Conflict("Members end their own sign-ins; an admin cannot.")
        if account.id == actor.id:
            raise Conflict("End your own other sign-ins with revoke-others.")
        self._tokens().revoke_account(account.id)
        audit.record(
            self.session,
            "account.sign_out",
            target_type="account",
            target_id=account.id,
            details={"role": account.role},
        )
