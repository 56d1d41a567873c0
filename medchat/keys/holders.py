"""The last active holder of a role key keeps it (issue 12, item 6).

One clinician session could revoke every holder of the physician key, itself included. The
key was then orphaned: the queue answered ``role_key_required``, a rotation could not start (it
needs a holder's session) and ``keys init`` refused (the keys exist). Nothing on the server can
give the key back (SECURITY-MODEL key hierarchy 4 and 11), so every conversation sealed to it
would be lost. Revoking a grant and disabling an account therefore refuse with 409
``last_key_holder`` when they would leave a role key without another active holder: grant the
key to a colleague first.

An *active holder* is counted from verified facts only, as a rotation counts them: an active
account of the key's holder role, whose grant of the role's active key version passes its row
tag and is sealed to the account's current personal key, itself passing its integrity tag (a
grant sealed to a key replaced since opens nothing). A planted grant row is left out (and the
refusal audited), so it cannot stand in for a colleague. The check holds the role's grant lock
(PostgreSQL) until the transaction ends, so two revocations racing cannot each see the other
as the remaining holder and both succeed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from access_control.crypto import DecryptionFailed
from access_control.hybrid_kem import wrap_key_id
from access_control.roles import Role
from medchat.errors import KeyIntegrityFailure, LastKeyHolder, NotFound
from medchat.models import (
    Account,
    AccountStatus,
    AuditEntry,
    KeyRole,
    RoleKey,
    RoleKeyGrant,
    RoleKeyStatus,
)
from medchat.storage.row_integrity import intact

if TYPE_CHECKING:  # custody appoints successors through this module (``successors``)
    from medchat.keys.custody import KeyCustody

#: Which account role may hold which role key.
HOLDER_ROLE = {KeyRole.PHYSICIAN: Role.CLINICIAN, KeyRole.ARCHIVE: Role.COMPLIANCE}


#: Audited acts that take a holder's grants away (SECURITY-MODEL 11).
LOSS_OF_ACCESS = ("role_key.revoke", "account.disable", "account.reset")


def lost_access_since(session: Session, grant: RoleKeyGrant) -> bool:
    """Whether the audit trail records a loss of access after this grant was made.

    A loss of access deleted the holder's grants, so such a grant can only be an older row
    put back by someone who can write the database (it verifies: the server once tagged it).
    The audit chain is MAC'd and anchored and the service's login cannot rewrite it, so it is
    the witness: such a grant is never counted as a holder, nor handed a rotated key.
    """
    lost = session.scalar(
        select(func.max(AuditEntry.at)).where(
            AuditEntry.target_type == "account",
            AuditEntry.target_id == str(grant.account_id),
            AuditEntry.action.in_(LOSS_OF_ACCESS),
        )
    )
    return lost is not None and grant.created_at < lost


def verified_holders(
    session: Session, custody: KeyCustody, role_key: RoleKey
) -> list[RoleKeyGrant]:
    """The grant of each holder of this role key version who can open
    it at their next sign-in, from verified facts only: the grant's row tag (a planted one is
    left out, refused and audited), no loss of access recorded after it, the account's row
    tag, status and role, and a grant sealed to the account's current, tagged personal key.
    The one rule for "who holds a role key": the last-holder check and a rotation's grants."""
    holders = []
    # Oldest first: a rotation hands keys over in the order they were granted, every run alike.
    grants = (
        select(RoleKeyGrant)
        .where(RoleKeyGrant.role_key_id == role_key.id)
        .order_by(RoleKeyGrant.created_at, RoleKeyGrant.account_id)
    )
    for grant in intact(session, grants):
        if lost_access_since(session, grant):
            continue
        found = intact(session, select(Account).where(Account.id == grant.account_id))
        if not found or found[0].status != AccountStatus.ACTIVE:
            continue
        if found[0].role != HOLDER_ROLE[KeyRole(role_key.role)]:
            continue
        try:
            personal = custody.verified_personal_key(grant.account_id)
            if wrap_key_id(grant.wrap) != personal.key_id:
                continue
        except (KeyIntegrityFailure, NotFound, DecryptionFailed):
            continue
        holders.append(grant)
    return holders


def active_holders(session: Session, custody: KeyCustody, role: str) -> set[uuid.UUID]:
    """The accounts that can open the role's active key at their next sign-in."""
    return {
        grant.account_id
        for key in custody.role_keys(role, RoleKeyStatus.ACTIVE)
        for grant in verified_holders(session, custody, key)
    }


def require_another_holder(
    session: Session, custody: KeyCustody, account_id: uuid.UUID, roles: Iterable[str]
) -> None:
    """Raise ``LastKeyHolder`` if ``account_id`` is the only active holder of one of
    ``roles``' keys; hold each role's grant lock until the caller's transaction ends."""
    for role in sorted(set(roles)):
        custody.hold_grant_lock(role)
        if active_holders(session, custody, role) == {account_id}:
            raise LastKeyHolder(
                f"This account is the last active holder of the {role} key; removing it would "
                "lose the key and everything sealed to it. Grant the key to a colleague first."
            )
