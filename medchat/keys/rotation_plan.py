"""Which keys a rotation run works on: a new rotation started, or the unfinished one resumed.

Rotation step 1 (``medchat.keys.rotation``): a PENDING role key is created, pinned (pin
file) and sealed to the person running the rotation, with the ``RoleKeyRotation`` row, in one
transaction. A later run finds that row and resumes it instead.

Where a resumed run gets the new private key: the process that created it holds it only in
memory, so step 1 commits the key together with its seal to the starter's own personal key
(a grant like any other). Step 2 seals it to every other holder. A resumed run opens it like
any role key, from the grants of whoever runs it (``KeyCustody.open_grants`` includes pending
keys). If the person resuming has no copy (step 1 committed, step 2 did not, and they are not
the starter), nothing has been sealed to the pending key yet, so it is abandoned (retired,
unpinned, its grants deleted) and a fresh rotation starts. After activation every holder of
the old key at step 2 holds the new one; anyone else is told to let such a holder resume.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from access_control import hybrid_kem
from access_control.keyring import HeldRoleKey
from medchat import audit
from medchat.db import rows_changed
from medchat.errors import Conflict, KeyIntegrityFailure, RoleKeyRequired
from medchat.identity.principal import Principal
from medchat.keys.custody import KeyCustody
from medchat.models import (
    Account,
    KeyRole,
    RoleKey,
    RoleKeyGrant,
    RoleKeyRotation,
    RoleKeyStatus,
)

if TYPE_CHECKING:  # the service context is passed in; importing it would run back up a layer
    from medchat.services.context import ServiceContext

__all__ = [
    "PinRequest",
    "PinRequired",
    "RotationPlan",
    "held_role_key",
    "pin_request",
    "start_or_resume",
]


@dataclass(frozen=True)
class PinRequest:
    """What the operator confirms before pinning a rotation's new key: which key, and who
    started the rotation and when (issue 18 item 1).

    A fingerprint alone proves nothing to the person adding it to ``MEDCHAT_ROLE_KEY_PINS``:
    rows planted around the service once made a genuine-looking run print an attacker's key
    here, word for word. So the request is built only from rows whose tags verify (the
    rotation, both of its keys and the starter's account, each checked as it is loaded), the
    key must match its fingerprint, and the prompt names the starter (name, e-mail, id) and
    the time, for the operator to confirm with that person before pinning.
    """

    role: str
    version: int
    fingerprint: str
    rotation_id: uuid.UUID
    started_at: datetime
    started_by_id: uuid.UUID | None
    #: "First Last <e-mail>", or why there is none (the account was deleted since).
    started_by: str
    environment: bool

    @property
    def where(self) -> str:
        return "MEDCHAT_ROLE_KEY_PINS" if self.environment else "role-pins.json"

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "pin": f"{self.role}:{self.fingerprint}",
            "pin_in": self.where,
            "rotation_id": str(self.rotation_id),
            "started_at": self.started_at.isoformat(),
            "started_by": {
                "id": None if self.started_by_id is None else str(self.started_by_id),
                "name": self.started_by,
            },
        }

    def prompt(self) -> str:
        """The text the operator reads (``medchat keys rotate`` prints it on stdout)."""
        by = self.started_by
        if self.started_by_id is not None:
            by += f" (account {self.started_by_id})"
        return "\n".join(
            [
                f"The new {self.role} role key v{self.version} waits for its pin.",
                f"  rotation started by: {by}",
                f"  started at:          {self.started_at.isoformat()}",
                f"  fingerprint:         {self.fingerprint}",
                "Confirm with that person that they started this rotation at that time. If so,",
                f"add {self.role}:{self.fingerprint} to {self.where} on every host (keep the",
                "current pin) and run 'medchat keys rotate' again. If not, pin nothing: the",
                "database was written around the service (docs/security.md, 'Rotate a role key').",
            ]
        )


class PinRequired(Conflict):
    """The new key must be pinned by the deployment before it can become active.

    The message names the key, the starter's account id and the time; ``request`` carries
    the whole prompt (with the starter's name and e-mail, kept out of the message).
    """

    code = "role_key_pin_required"

    def __init__(self, request: PinRequest) -> None:
        super().__init__(
            f"the new {request.role} key v{request.version} is not pinned: confirm the "
            f"rotation started by account {request.started_by_id} at "
            f"{request.started_at.isoformat()}, then add {request.role}:{request.fingerprint} "
            f"to {request.where} on every host (keep the current pin) and run "
            "'medchat keys rotate' again"
        )
        self.request = request
        self.fingerprint = request.fingerprint


def pin_request(session: Session, runtime: ServiceContext, rotation_id: uuid.UUID) -> PinRequest:
    """The pin prompt of an unfinished rotation, from verified rows only.

    Every row is loaded as an object, so its row tag is checked on load and a planted or
    altered one raises ``RowIntegrityFailure`` (audited) before anything is shown; the new
    key must be the rotation's role's pending key and match its fingerprint.
    """
    rotation = session.get(RoleKeyRotation, rotation_id)
    new = None if rotation is None else session.get(RoleKey, rotation.to_key_id)
    if rotation is None or new is None:
        raise Conflict("the rotation was finished or abandoned by another run")
    if (
        new.role != rotation.role
        or new.status != RoleKeyStatus.PENDING
        or hybrid_kem.public_key_fingerprint(new.public_key) != new.fingerprint
    ):
        raise KeyIntegrityFailure(f"The {rotation.role} rotation's new key does not match.")
    starter = None if rotation.started_by is None else session.get(Account, rotation.started_by)
    if starter is None:
        started_by = "an account that no longer exists"
    else:
        last_name = runtime.profiles.open(starter.id, "last_name", starter.last_name_ciphertext)
        email = runtime.profiles.open(starter.id, "email", starter.email_ciphertext)
        first_name = runtime.profiles.open(starter.id, "first_name", starter.first_name_ciphertext)
        name = f"{first_name} {last_name or ''}".strip()
        started_by = f"{name} <{email or ''}>"
    return PinRequest(
        role=rotation.role,
        version=new.version,
        fingerprint=new.fingerprint,
        rotation_id=rotation.id,
        started_at=rotation.started_at,
        started_by_id=rotation.started_by,
        started_by=started_by,
        environment=runtime.pins.fixed,
    )


@dataclass(frozen=True, repr=False)
class RotationPlan:
    rotation_id: uuid.UUID
    old: RoleKey
    new: RoleKey
    old_key: HeldRoleKey
    new_private: hybrid_kem.PrivateKeyHandle
    activated: bool


def held_role_key(actor: Principal, role: KeyRole, role_key_id: uuid.UUID) -> HeldRoleKey | None:
    """The actor's opened copy of one role key, if its sign-in holds one."""
    return next(
        (k for k in actor.keyring.role_keys(role) if k.role_key_id == role_key_id),
        None,
    )


def start_or_resume(
    session: Session, custody: KeyCustody, runtime: ServiceContext, actor: Principal, role: KeyRole
) -> tuple[RotationPlan, int]:
    """The role's rotation plan, resumed or newly started, and the grants made doing it.

    Runs inside the caller's transaction; a new rotation commits with it.
    """
    # Two runs starting at once: the second waits here, then resumes the first's.
    custody.hold_grant_lock(role)
    rotation = session.scalar(
        select(RoleKeyRotation)
        .where(RoleKeyRotation.role == role, RoleKeyRotation.finished_at.is_(None))
        .with_for_update()
    )
    if rotation is not None:
        plan = _resume(session, custody, runtime, actor, role, rotation)
        if plan is not None:
            return plan, 0
    old = custody.active_role_key(role)
    old_key = held_role_key(actor, role, old.id)
    if old_key is None:
        raise RoleKeyRequired
    new, new_private = custody.create_role_key(role, RoleKeyStatus.PENDING)
    fixed = runtime.pins.fixed
    if not fixed:
        # Pinned before anything is sealed to it, long before it is active: a host
        # that reads it as active later finds it pinned already.
        runtime.pins.add(role, [new.fingerprint])
    # The starter's own copy commits with the key: the only way a resumed run can get
    # the private key back, since this process holds it only in memory.
    custody.grant(new, new_private, actor.id, granted_by=actor.id, require_pin=not fixed)
    rotation = RoleKeyRotation(
        id=uuid.uuid4(),
        role=role,
        from_key_id=old.id,
        to_key_id=new.id,
        started_by=actor.id,
        started_at=custody.now,
        resealed=0,
    )
    session.add(rotation)
    audit.record(
        session,
        "role_key.rotation_start",
        target_type="role_key",
        target_id=new.id,
        details={
            "role": str(role),
            "from_version": old.version,
            "to_version": new.version,
            "fingerprint": new.fingerprint,
            "pinned_by": "environment" if fixed else "pin_file",
        },
    )
    return RotationPlan(rotation.id, old, new, old_key, new_private, activated=False), 1


def _resume(
    session: Session,
    custody: KeyCustody,
    runtime: ServiceContext,
    actor: Principal,
    role: KeyRole,
    rotation: RoleKeyRotation,
) -> RotationPlan | None:
    """The unfinished rotation's plan, or None after abandoning one nobody can finish."""
    old = session.get(RoleKey, rotation.from_key_id)
    new = session.get(RoleKey, rotation.to_key_id)
    assert old is not None and new is not None  # nosec B101  # foreign keys of the rotation
    old_key, new_key = held_role_key(actor, role, old.id), held_role_key(actor, role, new.id)
    activated = rotation.activated_at is not None
    if old_key is None:
        raise RoleKeyRequired
    if new_key is not None:
        return RotationPlan(rotation.id, old, new, old_key, new_key.key, activated)
    if activated:
        raise RoleKeyRequired(
            f"this {role} rotation is past activation and your sign-in holds no copy "
            "of its new key; let a holder who has it (the one who started it) resume it"
        )
    if not custody.is_pinned(new):
        # Environment pins not updated yet: sign-in leaves the key out until then.
        raise PinRequired(pin_request(session, runtime, rotation.id))
    # Nothing has been sealed to the pending key yet, so giving it up loses nothing.
    new.status = RoleKeyStatus.RETIRED
    new.retired_at = custody.now
    removed = rows_changed(
        session.execute(delete(RoleKeyGrant).where(RoleKeyGrant.role_key_id == new.id))
    )
    rotation.finished_at = custody.now
    audit.record(
        session,
        "role_key.rotation_abandon",
        target_type="role_key",
        target_id=new.id,
        details={"role": str(role), "version": new.version, "grants_removed": removed},
    )
    session.flush()
    return None
