"""Role keys: bootstrap, grants between colleagues, revocation (SECURITY-MODEL 4, 6, 9, 11).

``initialise`` creates the physician and compliance-archive keypairs and seals each to its
first holder; after that only a holder can hand a role key on (``grant``), from a session that
holds it. A grant names the newcomer's key fingerprint, for the granter to compare with the
newcomer before (``colleague_key``) and after, and refuses when it is not the one they
compared (SECURITY-MODEL 10). An admin can create a clinician but never give it access to
content. Revoking a grant needs the revoker's password again (``step_up``) and never removes
the last active holder (``key_holders``); like disabling an account it deletes the holder's
sessions at once, because they carry opened keys, and makes a rotation of the role key due
(``medchat keys rotate``): a copy of the database taken earlier plus the holder's password
still opens the old key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from access_control.hybrid_kem import format_fingerprint, public_key_fingerprint
from medchat import audit
from medchat.errors import Conflict, NotFound, RoleKeyRequired
from medchat.identity.principal import Principal
from medchat.identity.tokens import TokenStore
from medchat.keys.holders import HOLDER_ROLE, active_holders, require_another_holder
from medchat.models import Account, AccountStatus, KeyRole, RoleKeyStatus
from medchat.services.accounts import AccountService
from medchat.services.authentication import AuthenticationService
from medchat.services.context import ServiceContext
from medchat.services.rotation_notices import mark_rotation_due

#: ``rotation_reason`` of a role key whose holder lost access.
REVOKED_REASON = "grant_revoked"


@dataclass(frozen=True)
class ColleagueKey:
    """Whom a grant would seal to: shown to the granter before they confirm."""

    account_id: uuid.UUID
    display_name: str
    #: The colleague's personal key fingerprint, grouped for reading aloud.
    fingerprint: str


@dataclass(frozen=True)
class Granted:
    """What a grant answers: whose key received the role key, and its fingerprint."""

    account_id: uuid.UUID
    role: str
    #: The newcomer's personal key fingerprint, grouped for reading aloud.
    fingerprint: str
    role_key_versions: list[int]


@dataclass(frozen=True)
class InitialisedKeys:
    physician_key_id: uuid.UUID
    archive_key_id: uuid.UUID
    physician_fingerprint: str
    archive_fingerprint: str


class RoleKeyService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime
        self.custody = runtime.custody(session)

    def _holder(self, email_or_id: str | uuid.UUID, key_role: KeyRole) -> Account:
        accounts = AccountService(self.session, self.runtime)
        if isinstance(email_or_id, uuid.UUID):
            account = self.session.get(Account, email_or_id)
        else:
            account = accounts.find_by_email(email_or_id)
        if account is None or account.role != HOLDER_ROLE[key_role]:
            raise NotFound(f"No {HOLDER_ROLE[key_role]} account with that identity.")
        if account.status != AccountStatus.ACTIVE:
            raise Conflict("The account has not finished enrollment (or is disabled).")
        return account

    def initialise(self, clinician: str, compliance: str) -> InitialisedKeys:
        """Create both role keypairs, seal them to their first holders, pin them.

        Refuses when role keys exist: a second bootstrap would split the deployment in two.
        """
        if self.custody.role_keys(KeyRole.PHYSICIAN) or self.custody.role_keys(KeyRole.ARCHIVE):
            raise Conflict("Role keys exist already; use grants and 'medchat keys rotate'.")
        holders = {
            KeyRole.PHYSICIAN: self._holder(clinician, KeyRole.PHYSICIAN),
            KeyRole.ARCHIVE: self._holder(compliance, KeyRole.ARCHIVE),
        }
        created = {}
        for key_role, holder in holders.items():
            row, private = self.custody.create_role_key(key_role, RoleKeyStatus.ACTIVE)
            # Pinned before anything is sealed to it, so the grant's pin check passes.
            self.runtime.pins.add(key_role, [row.fingerprint])
            holder_fingerprint = self.custody.grant(row, private, holder.id, granted_by=None)
            created[key_role] = row
            audit.record(
                self.session,
                "role_key.init",
                target_type="role_key",
                target_id=row.id,
                details={
                    "role": str(key_role),
                    "fingerprint": row.fingerprint,
                    "holder": str(holder.id),
                    "holder_key_fingerprint": holder_fingerprint,
                },
            )
        return InitialisedKeys(
            physician_key_id=created[KeyRole.PHYSICIAN].id,
            archive_key_id=created[KeyRole.ARCHIVE].id,
            physician_fingerprint=created[KeyRole.PHYSICIAN].fingerprint,
            archive_fingerprint=created[KeyRole.ARCHIVE].fingerprint,
        )

    def colleagues(self, actor: Principal, key_role: KeyRole) -> list[tuple[Account, bool]]:
        """The active accounts of the key's holder role but the actor's, each with whether
        it holds the key (``key_holders.active_holders``): whom a holder may grant it to."""
        if not actor.keyring.role_keys(key_role):
            raise RoleKeyRequired
        holders = active_holders(self.session, self.custody, key_role)
        accounts = self.session.scalars(
            select(Account)
            .where(
                Account.role == HOLDER_ROLE[key_role],
                Account.status == AccountStatus.ACTIVE,
                Account.id != actor.id,
            )
            .order_by(Account.display_name, Account.id)
        )
        return [(account, account.id in holders) for account in accounts]

    def colleague_key(
        self, actor: Principal, key_role: KeyRole, colleague_id: uuid.UUID
    ) -> ColleagueKey:
        """The fingerprint a grant to this colleague would seal to (verified), for the
        granter to compare with the newcomer before confirming."""
        if not actor.keyring.role_keys(key_role):
            raise RoleKeyRequired
        colleague = self._holder(colleague_id, key_role)
        fingerprint = format_fingerprint(self._fingerprint(colleague))
        return ColleagueKey(colleague.id, colleague.display_name or "", fingerprint)

    def _fingerprint(self, colleague: Account) -> str:
        key = self.custody.verified_personal_key(colleague.id)
        return public_key_fingerprint(key.public_key)

    def grant(
        self,
        actor: Principal,
        key_role: KeyRole,
        colleague_id: uuid.UUID,
        *,
        expected_fingerprint: str | None = None,
    ) -> Granted:
        """Seal every version of the role key the actor holds to a colleague's key.

        Returns the colleague's key fingerprint (also written to the audit entry). Raises
        ``RoleKeyRequired`` (a ``Forbidden``) when the actor's session holds no current
        version of the key, ``NotFound`` for anyone but an active colleague of the right role,
        ``KeyIntegrityFailure`` when the colleague's public key fails its tag, and
        ``Conflict`` when ``expected_fingerprint`` (what the granter compared) is not the
        colleague's key now: nothing is sealed then.
        """
        held = list(actor.keyring.role_keys(key_role))
        if not held:
            raise RoleKeyRequired
        colleague = self._holder(colleague_id, key_role)
        if actor.keyring.personal is not None:
            # Versions made since the session opened (a successor after a loss: the
            # newcomer must hold the key new epochs are sealed to), as signing in would.
            have = {item.role_key_id for item in held}
            fresh = self.custody.open_grants(actor.keyring.account_id, actor.keyring.personal)
            held += [k for k in fresh if k.role == key_role and k.role_key_id not in have]
        compared = expected_fingerprint
        if compared is not None and not _matches(compared, self._fingerprint(colleague)):
            raise Conflict(
                "The colleague's key is not the one you compared; check it with them again."
            )
        rows = {row.id: row for row in self.custody.role_keys(key_role)}
        fingerprint = ""
        versions = []
        for item in held:
            row = rows.get(item.role_key_id)
            if row is None or row.status == RoleKeyStatus.RETIRED:
                continue
            fingerprint = self.custody.grant(row, item.key, colleague.id, granted_by=actor.id)
            versions.append(row.version)
        if not versions:
            # Only retired or vanished versions in this session: a success would seal nothing.
            raise RoleKeyRequired
        audit.record(
            self.session,
            "role_key.grant",
            target_type="account",
            target_id=colleague.id,
            details={
                "role": str(key_role),
                "holder_key_fingerprint": fingerprint,
                "role_key_versions": sorted(versions),
            },
        )
        return Granted(
            account_id=colleague.id,
            role=str(key_role),
            fingerprint=format_fingerprint(fingerprint),
            role_key_versions=sorted(versions),
        )

    def revoke(
        self,
        actor: Principal,
        key_role: KeyRole,
        colleague_id: uuid.UUID,
        *,
        password: str,
        address: str,
    ) -> list[str]:
        """Delete a colleague's copies of the role key and end their sessions at once.

        Needs the actor's password again (``step_up``: 401 ``invalid_credentials``) and
        refuses the last active holder (409 ``last_key_holder``), the actor included.
        Returns the roles whose rotation this made due (``[key_role]`` when a copy was
        deleted, ``[]`` when the colleague held none): the caller tells the person so.
        """
        if not actor.keyring.role_keys(key_role):
            raise RoleKeyRequired
        AuthenticationService(self.session, self.runtime).step_up(
            actor.account, password, address=address, action="role_key.revoke"
        )
        account = self.session.get(Account, colleague_id)
        if account is None or account.role != HOLDER_ROLE[key_role]:
            raise NotFound
        require_another_holder(self.session, self.custody, colleague_id, [key_role])
        removed = self.custody.revoke_grants(colleague_id, key_role)
        TokenStore(self.session, self.runtime.clock.now()).revoke_account(colleague_id)
        due = [str(key_role)] if removed else []
        for role in due:
            mark_rotation_due(self.session, self.runtime, role, REVOKED_REASON, lost=colleague_id)
        audit.record(
            self.session,
            "role_key.revoke",
            target_type="account",
            target_id=colleague_id,
            details={"role": str(key_role), "grants_removed": removed, "rotation_due": due},
        )
        return due


def _matches(expected: str, fingerprint: str) -> bool:
    """Whether what the granter compared (at least the 32 digits shown, as typed or read
    aloud: case, spaces and separators do not matter) is the start of ``fingerprint``."""
    plain = "".join(ch for ch in expected.lower() if ch in "0123456789abcdef")
    return len(plain) >= 32 and fingerprint.startswith(plain)
