"""Successor role keys: a holder who loses a role key never receives what is written later.

Issue 18: a key epoch begun after a loss (``medchat.keys.epochs``) shut out the conversation
keys a leaver kept, but its DEK was still wrapped to the same role key until someone ran
``medchat keys rotate``. A leaver who kept that role key, or rebuilt it from a database copy
taken before the loss and their password, read everything written in between.

So the loss itself makes a new role key version, a **successor**, in the same transaction
(``KeyCustody.mark_rotation_due``, the one place every loss passes): a fresh keypair, status
``successor`` (in the row tag, with its role, version, public key and fingerprint), sealed to
every remaining verified holder of the active key (``holders.verified_holders``; public-key
operations only, so an admin without keys can disable someone). From then on a new epoch is
wrapped to the newest successor instead of the active key (``sealing_key``), so the leaver's
copy opens none of it. Holders reach it mid-session through their grants, as they reach a
rotation's new key. A second loss before the rotation makes another successor (the second
leaver held the first); the first keeps opening the epochs sealed to it.

Trust: a successor is never pinned (the loss happens in a web request, which cannot write
the deployment's pins). It is trusted on its row tag and fingerprint, as personal keys are,
and only for wrapping new epochs; a rotation never adopts it as its new key: it makes its own,
pinned as ever, re-seals the wraps of the old key and of every earlier successor to it, and
retires them all (``medchat.keys.rotation``). So a successor planted by someone holding the
integrity key could receive new content until the rotation, never become the pinned key.
A successor row that fails its tag is refused (``RowIntegrityFailure``, 409): the seal fails
loudly rather than falling back to the key the leaver holds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from medchat import audit
from medchat.keys.holders import verified_holders
from medchat.keys.rotation_deadline import require_sealable
from medchat.models import KeyRole, RoleKey, RoleKeyStatus

if TYPE_CHECKING:  # custody calls in here (``mark_rotation_due``)
    from medchat.keys.custody import KeyCustody


@dataclass(frozen=True)
class SealingKey:
    """One role's keys for a new epoch: the active key (pinned; its rotation deadline
    applies) and the key the epoch's DEK is wrapped to (the newest successor, or it)."""

    active: RoleKey
    key: RoleKey


def sealing_key(custody: KeyCustody, role: str) -> SealingKey:
    """The key a new epoch of ``role`` is wrapped to, checked.

    The active key as ``KeyCustody.active_role_key`` returns it (pinned; the caller holds the
    role's sealing lock, shared, so a rotation's activation waits for this seal); then the
    newest successor above it, if any, which must match its fingerprint. Every successor row
    is loaded, so a planted one fails its row tag here and the seal is refused.
    """
    active = custody.active_role_key(role)
    successors = custody.role_keys(role, RoleKeyStatus.SUCCESSOR)
    if not successors or successors[-1].version < active.version:
        return SealingKey(active, active)
    custody.require_trusted(successors[-1])
    return SealingKey(active, successors[-1])


def epoch_keys(custody: KeyCustody, deadline: timedelta, now: datetime) -> tuple[RoleKey, RoleKey]:
    """The physician and archive keys a new epoch is wrapped to (``sealing_key``).

    Raises ``RotationOverdue`` past an active key's rotation deadline
    (``medchat.keys.rotation_deadline``): what it still protects once new content goes to
    successors is the rotation itself, which re-seals the old wraps and retires them.
    """
    doctors = sealing_key(custody, KeyRole.PHYSICIAN)
    archives = sealing_key(custody, KeyRole.ARCHIVE)
    due = {
        key.role: key.rotation_due_at
        for key in (doctors.active, archives.active)
        if key.rotation_due_at is not None
    }
    require_sealable(due, now, deadline, custody.session.info)
    return doctors.key, archives.key


def earlier_successors(custody: KeyCustody, role: str, below: int) -> list[RoleKey]:
    """The successors a rotation to version ``below`` retires: those made before it began.

    A successor made during the rotation (a loss after its start) has a higher version: it
    stays, for the new key may have reached the one who left (rotate again)."""
    return [row for row in custody.role_keys(role, RoleKeyStatus.SUCCESSOR) if row.version < below]


def appoint_successor(
    session: Session,
    custody: KeyCustody,
    role: str,
    reason: str,
    *,
    lost: uuid.UUID | None = None,
) -> RoleKey | None:
    """Make a successor for ``role`` and seal it to the remaining verified holders.

    ``lost`` is the account that lost the key (its grants are deleted already; left out
    anyway). Returns None when there is nothing to succeed (before ``keys init``) or nobody
    verified to hold it: a key nobody holds would lose what is sealed to it, so new epochs
    then stay on the active key as before (the rotation deadline bounds that).
    """
    active = custody.role_keys(role, RoleKeyStatus.ACTIVE)
    if len(active) != 1:
        return None
    recipients = sorted(
        {grant.account_id for grant in verified_holders(session, custody, active[0])} - {lost}
    )
    if not recipients:
        return None
    replaced = [
        row.version
        for row in custody.role_keys(role, RoleKeyStatus.SUCCESSOR)
        if row.version > active[0].version
    ]
    key, private = custody.create_role_key(role, RoleKeyStatus.SUCCESSOR)
    for account_id in recipients:
        custody.grant(key, private, account_id, granted_by=None)  # tag and fingerprint
    audit.record(
        session,
        "role_key.successor",
        target_type="role_key",
        target_id=key.id,
        details={
            "role": role,
            "version": key.version,
            "fingerprint": key.fingerprint,
            "reason": reason[:64],
            "holders": len(recipients),
            "succeeds_versions": [active[0].version, *replaced],
        },
    )
    return key
