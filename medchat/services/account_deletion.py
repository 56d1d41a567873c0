"""A member erases their account: nothing left in the database names them, except what the
law keeps (the right to erasure; docs/data-rights.md says what is kept, why and how long).

The member confirms with their password (re-authentication: a stolen access token alone must
not erase an account; a wrong password is 401 ``invalid_credentials``, audited, and counts
toward the same failure budgets as sign-in: ``AuthenticationService.step_up``). Then, in one
transaction, either all of this commits or none of it does:

1. every live conversation is sealed into the archive exactly as a deletion request seals
   one (``DeletionService.delete_own``: live wraps destroyed, signed ledger record, audited
   ``conversation.seal``), while the account still carries its e-mail blind index, which the
   ledger record keeps so compliance can still find the records by address;
2. the current consent is withdrawn (the consent history stays: it is the evidence that the
   processing was lawful, and it names nobody once the profile is gone);
3. every session and token is revoked, the personal keys (current and retired), any re-wrap
   requests, reset tokens, recovery codes and idempotency records are deleted;
4. the profile is removed: the member profile row (birth date, sex, phone, insurance number)
   is deleted; on the account the e-mail and last-name ciphertexts are emptied, the first
   name is blanked, password hash and TOTP are cleared, and the e-mail blind index is
   replaced by random bytes, so the address is free to register again and the old password
   signs in nowhere;
5. the account row stays as a tombstone with status ``deleted``: messages, archive records and
   audit entries refer to its id, and ids are all they hold.

Audited as ``account.delete`` (ids and counts only), after the seals it caused.
"""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat import audit
from medchat.errors import Forbidden, InvalidCredentials
from medchat.identity.principal import Principal
from medchat.identity.tokens import TokenStore
from medchat.models import (
    LIVE_STATUSES,
    Account,
    AccountStatus,
    Conversation,
    ConversationKeyWrap,
    EmailChangeToken,
    Holder,
    IdempotencyRecord,
    KnownDevice,
    MemberProfile,
    NotificationOutbox,
    NotificationPreference,
    PasswordResetToken,
    PersonalKey,
    PushSubscription,
    RecoveryCode,
    RewrapRequest,
)
from medchat.services.authentication import AuthenticationService
from medchat.services.consent import ConsentService
from medchat.services.context import ServiceContext
from medchat.services.deletion import DeletionService

DELETED = "deleted"
#: Length of the blind index (HMAC-SHA256); the tombstone's is random bytes of that length.
_INDEX_BYTES = 32


class AccountDeletionService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime

    def delete_own(self, actor: Principal, password: str, *, address: str) -> str:
        """Erase the member's account (API: 202 ``{"status": "deleted"}``).

        Raises ``Forbidden`` for anyone but a member and ``InvalidCredentials`` for a wrong
        password (nothing changes; the failure is audited after the rollback).
        """
        if actor.role != Role.MEMBER:
            raise Forbidden
        account = actor.account
        # Locked first: a second deletion (another device) waits here, then fails the check.
        # (The row alone: FOR UPDATE may not reach the profile's outer join on PostgreSQL.)
        self.session.execute(select(Account.id).where(Account.id == account.id).with_for_update())
        self.session.refresh(account)
        if account.status != AccountStatus.ACTIVE:
            audit.record_on_rollback(
                self.session,
                "account.delete",
                target_type="account",
                target_id=account.id,
                subject_id=account.id,
                outcome="failure",
            )
            raise InvalidCredentials("The password is wrong.")
        # The sign-in failure budgets count a wrong password here as a wrong sign-in.
        AuthenticationService(self.session, self.runtime).step_up(
            account, password, address=address, action="account.delete", subject_id=account.id
        )
        return self.erase(account)

    def erase(self, account: Account, *, ticket: str | None = None) -> str:
        """Erase a member's account, whose request was checked by the caller: the member's
        password (``delete_own``) or the data protection officer's ticket (``ticket``, in the
        ``account.delete`` entry). The caller holds the account row's lock."""
        if account.role != Role.MEMBER or account.status != AccountStatus.ACTIVE:
            raise Forbidden
        sealed = self._seal_live_conversations(account.id)
        ConsentService(self.session, self.runtime).withdraw_for(account.id)
        self._destroy_secrets(account.id)
        self._remove_profile(account)
        details: dict[str, object] = {"conversations_sealed": sealed}
        if ticket:
            details["ticket"] = ticket
        audit.record(
            self.session,
            "account.delete",
            target_type="account",
            target_id=account.id,
            subject_id=account.id,
            details=details,
        )
        return DELETED

    def _seal_live_conversations(self, member_id: uuid.UUID) -> int:
        """Seal each live conversation as a deletion request would (audited one by one)."""
        ids = list(
            self.session.scalars(
                select(Conversation.id)
                .where(Conversation.member_id == member_id, Conversation.status.in_(LIVE_STATUSES))
                .order_by(Conversation.created_at, Conversation.id)
            )
        )
        deletion = DeletionService(self.session, self.runtime)
        for conversation_id in ids:
            deletion.seal_for_member(member_id, conversation_id)
        return len(ids)

    def _destroy_secrets(self, account_id: uuid.UUID) -> None:
        """Sessions, keys and every single-use secret of the account."""
        TokenStore(self.session, self.runtime.clock.now()).revoke_account(account_id)
        custody = self.runtime.custody(self.session)
        custody.revoke_grants(account_id)  # members hold none; a tombstone never will
        own_conversations = select(Conversation.id).where(Conversation.member_id == account_id)
        for statement in (
            delete(RewrapRequest).where(RewrapRequest.member_id == account_id),
            # Sealing destroyed the live wraps; none of the member's may survive anywhere.
            delete(ConversationKeyWrap).where(
                ConversationKeyWrap.holder == Holder.MEMBER,
                ConversationKeyWrap.conversation_id.in_(own_conversations),
            ),
            delete(PersonalKey).where(PersonalKey.account_id == account_id),
            delete(PasswordResetToken).where(PasswordResetToken.account_id == account_id),
            # A pending address change holds the new address, sealed: it goes with the rest.
            delete(EmailChangeToken).where(EmailChangeToken.account_id == account_id),
            delete(RecoveryCode).where(RecoveryCode.account_id == account_id),
            delete(IdempotencyRecord).where(IdempotencyRecord.account_id == account_id),
            # Nothing is sent to an erased account, and its browsers' endpoints go too.
            delete(NotificationOutbox).where(NotificationOutbox.account_id == account_id),
            delete(PushSubscription).where(PushSubscription.account_id == account_id),
            delete(NotificationPreference).where(NotificationPreference.account_id == account_id),
            delete(KnownDevice).where(KnownDevice.account_id == account_id),
        ):
            self.session.execute(statement.execution_options(synchronize_session=False))

    def _remove_profile(self, account: Account) -> None:
        """Leave a tombstone: the row and its id, nothing that names or reaches the person."""
        self.session.execute(
            delete(MemberProfile)
            .where(MemberProfile.account_id == account.id)
            .execution_options(synchronize_session=False)
        )
        self.session.expire(account, ["profile"])
        # Random, not derived from the address: the address is free to register again and
        # no lookup by e-mail finds the tombstone (the archive ledger keeps the real index).
        account.email_index = secrets.token_bytes(_INDEX_BYTES)
        account.email_ciphertext = b""
        account.last_name_ciphertext = b""
        account.first_name_ciphertext = b""
        account.display_name = None
        account.forget_sign_in_secrets()
        account.password_changed_at = None
        account.status = AccountStatus.DELETED
        account.disabled_at = self.runtime.clock.now()
        self.session.flush()
