"""Role-key rotation: every DEK wrap moves to a new role key, online and resumable.

SECURITY-MODEL key hierarchy 4, 8, 9 and 11. Revoking a grant deletes the holder's live copy of
the role key, but a database copy taken earlier plus that holder's password still opens the old
key, and with it every DEK wrapped to it. A rotation seals every physician (or archive) wrap to
a new role key and then destroys every copy of the old one, so the old key opens nothing that
still exists. Content is never re-encrypted: only the wraps change.

The run is a sequence of committed steps, so the service keeps answering and a run stopped at
any point resumes where it stopped (``RoleKeyRotation`` keeps the state and the cursor):

1. **start**: a PENDING role key is created, pinned (pin file) and sealed to the person
   running the rotation, with the ``RoleKeyRotation`` row, in one transaction; or the
   unfinished rotation is resumed, or abandoned (``medchat.keys.rotation_plan``).
2. **grant**: the new key is sealed to every current holder of the old key.
3. **activate**: new key ACTIVE, old key RETIRING, in one transaction that waits for every
   transaction that read the old key as active (``KeyCustody.hold_sealing_lock``). From then on
   new conversations seal to the new key; the old key still opens the wraps not yet re-sealed.
4. **re-seal**, in batches with a committed cursor (``medchat.keys.rotation_wraps``).
5. **sweep and retire**: passes from the start until no wrap names the old key; then, in one
   transaction, the new key is sealed to anyone granted the old one meanwhile, the old key is
   RETIRED, its grants deleted and the rotation finished; its pin is removed after commit.

The successors that losses made before the rotation began (``medchat.keys.successors``) go
with the old key: their wraps are re-sealed to the new key after its own (step 4, one pass
each) and they are retired with it (step 5). The new key is always the rotation's own, never
a successor: only a key this run made is shown in the pin prompt.

How a resumed run gets the new private key back, and when an unfinished start is abandoned
instead: ``medchat.keys.rotation_plan``.

Nothing on the server can open a DEK alone: every step runs with a ``Principal`` whose keyring
a current holder opened with their password and second factor (``medchat keys rotate``).

Deployments pinning in ``MEDCHAT_ROLE_KEY_PINS`` cannot be pinned by this process: the run
stops after step 2 with ``PinRequired`` carrying the pin prompt (the fingerprint to add on
every host, who started the rotation and when, from tag-verified rows only:
``rotation_plan.pin_request``), and a run after that resumes and activates.
(``prepare_only`` stops there too, for pin files that must be copied to other hosts before
activation.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from access_control.hybrid_kem import PrivateKeyHandle
from medchat import audit
from medchat.db import rows_changed
from medchat.errors import Conflict, RoleKeyRequired
from medchat.identity.principal import Principal
from medchat.keys.custody import KeyCustody
from medchat.keys.holders import HOLDER_ROLE, verified_holders
from medchat.keys.rotation_plan import (
    PinRequired,
    RotationPlan,
    held_role_key,
    pin_request,
    start_or_resume,
)
from medchat.keys.rotation_state import Progress, RotationBlocked, locked_rotation, remaining_wraps
from medchat.keys.rotation_wraps import WrapResealer
from medchat.keys.successors import earlier_successors
from medchat.models import (
    KeyRole,
    RoleKey,
    RoleKeyGrant,
    RoleKeyRotation,
    RoleKeyStatus,
)

if TYPE_CHECKING:  # the service context is passed in; importing it would run back up a layer
    from medchat.services.context import ServiceContext

__all__ = ["PinRequired", "RotationBlocked", "RotationResult", "RotationService"]

DEFAULT_BATCH = 1000


@dataclass(frozen=True)
class RotationResult:
    role: str
    from_version: int
    to_version: int
    fingerprint: str
    #: Wraps re-sealed by the whole rotation (all runs), and new-key grants made by this run.
    resealed: int
    grants: int
    activated: bool
    retired: bool
    #: With environment pins: the old fingerprint the operator should now remove.
    unpin: str | None = None


class RotationService:
    """Rotates one role key for a principal who holds it (see the module docstring)."""

    def __init__(
        self,
        runtime: ServiceContext,
        actor: Principal,
        role: KeyRole,
        *,
        batch_size: int = DEFAULT_BATCH,
        progress: Progress | None = None,
        audit_context: audit.AuditContext | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.runtime = runtime
        self.actor = actor
        self.role = KeyRole(role)
        self.holder = str(self.role)  # the wrap holder has the role's name
        self.batch_size = batch_size
        self.progress = progress
        self.audit_context = audit_context or audit.AuditContext(
            actor_id=actor.id, actor_role=actor.role, address="cli"
        )
        self._grants = 0

    @contextmanager
    def _step(self) -> Iterator[tuple[Session, KeyCustody]]:
        with self.runtime.database.transaction() as session:
            audit.set_context(session, self.audit_context)
            yield session, self.runtime.custody(session)

    # -- the whole run -------------------------------------------------------------------

    def run(self, *, max_batches: int | None = None, prepare_only: bool = False) -> RotationResult:
        """Start or resume the role's rotation and take it as far as it goes.

        ``max_batches`` stops after that many re-seal batches of one key (an interrupted run,
        resumable; the old key and each earlier successor count on their own);
        ``prepare_only`` stops before activation. Raises ``RoleKeyRequired`` when the actor
        holds no key the rotation needs, ``PinRequired`` (environment pins), ``Conflict`` when
        another run changed the rotation underneath, ``RotationBlocked`` when wraps do not open.
        """
        if HOLDER_ROLE[self.role] != self.actor.role:
            raise RoleKeyRequired
        self._unpin_retired()
        plan = self._start()
        self._unpin_retired()  # a pending key abandoned by ``_start``
        successors = self._successors(plan)
        if not plan.activated:
            self._grant_holders(plan)
            if self.runtime.pins.fixed:
                self._require_pinned(plan)
            if prepare_only:
                return self._result(plan, activated=False, retired=False)
            self._activate(plan)
        for old, old_private in [(plan.old, plan.old_key.key), *successors]:
            if not self._left(old):
                continue  # done by an earlier run: its cursor belongs to the next key now
            resealer = WrapResealer(
                self.runtime,
                rotation_id=plan.rotation_id,
                holder=self.holder,
                old=old,
                old_private=old_private,
                new=plan.new,
                new_private=plan.new_private,
                batch_size=self.batch_size,
                audit_context=self.audit_context,
                progress=self.progress,
            )
            if not resealer.run(max_batches):
                return self._result(plan, activated=True, retired=False)
        self._retire(plan, [old for old, _ in successors])
        return self._result(plan, activated=True, retired=True)

    def _left(self, key: RoleKey) -> int:
        with self._step() as (session, _):
            return remaining_wraps(session, self.holder, key.key_id)

    def _successors(self, plan: RotationPlan) -> list[tuple[RoleKey, PrivateKeyHandle]]:
        """The successors made before this rotation began, each with the actor's copy.

        Their wraps are re-sealed to the new key after the old key's, one pass each (the
        rotation's cursor carries over: a resealer finds its own wraps with a sweep), and
        they retire with it. Raises ``RoleKeyRequired`` before anything else happens when
        the actor's sign-in holds no copy of one (``medchat.keys.successors``)."""
        with self._step() as (_, custody):
            rows = earlier_successors(custody, self.role, plan.new.version)
        found = []
        for row in rows:
            held = held_role_key(self.actor, self.role, row.id)
            if held is None:
                raise RoleKeyRequired(
                    f"this {self.role} rotation also retires successor v{row.version}, and "
                    "your sign-in holds no copy of it; let a holder who has it run it"
                )
            found.append((row, held.key))
        return found

    def _result(self, plan: RotationPlan, *, activated: bool, retired: bool) -> RotationResult:
        with self._step() as (session, _):
            rotation = session.get(RoleKeyRotation, plan.rotation_id)
            assert rotation is not None  # nosec B101  # rotation rows stay, finished or not
            resealed = rotation.resealed
        return RotationResult(
            role=str(self.role),
            from_version=plan.old.version,
            to_version=plan.new.version,
            fingerprint=plan.new.fingerprint,
            resealed=resealed,
            grants=self._grants,
            activated=activated,
            retired=retired,
            unpin=plan.old.fingerprint if retired and self.runtime.pins.fixed else None,
        )

    def _require_pinned(self, plan: RotationPlan) -> None:
        """``PinRequired``, with the prompt for the operator, while the new key is unpinned."""
        with self._step() as (session, custody):
            if not custody.is_pinned(plan.new):
                raise PinRequired(pin_request(session, self.runtime, plan.rotation_id))

    # -- 1. start (or resume) -------------------------------------------------------------

    def _start(self) -> RotationPlan:
        with self._step() as (session, custody):
            plan, grants = start_or_resume(session, custody, self.runtime, self.actor, self.role)
            self._grants += grants
            return plan

    def _unpin_retired(self) -> None:
        """Unpin retired versions still pinned (a run stopped between retiring and unpinning)."""
        if self.runtime.pins.fixed:
            return
        with self._step() as (session, _):
            retired = session.scalars(
                select(RoleKey.fingerprint).where(
                    RoleKey.role == self.role, RoleKey.status == RoleKeyStatus.RETIRED
                )
            ).all()
        pinned = self.runtime.pins.current()[self.role]  # every role, pinned or not
        stale = [fp for fp in retired if fp in pinned]
        if stale:
            self.runtime.pins.retire(self.role, stale)

    # -- 2. grant ------------------------------------------------------------------------

    def _grant_holders(self, plan: RotationPlan) -> None:
        with self._step() as (session, custody):
            self._grant_missing(session, custody, plan)

    def _grant_missing(self, session: Session, custody: KeyCustody, plan: RotationPlan) -> None:
        """Seal the new key to every holder of the old one who lacks it.

        Only to holders who can open their old copy today, from verified facts alone
        (``key_holders.verified_holders``: tagged grant and account rows, no loss of access
        recorded after the grant, the right role, a grant sealed to the current tagged
        personal key). A grant left over from a password reset stays as useless as it is (a
        colleague re-grants), and a revocation racing with this waits on the grant lock, then
        deletes what this sealed.
        """
        custody.hold_grant_lock(self.role)
        have_new = set(custody.holders(plan.new.id))
        granted = []
        for grant in verified_holders(session, custody, plan.old):
            account_id = grant.account_id
            if account_id in have_new:
                continue
            custody.grant(
                plan.new,
                plan.new_private,
                account_id,
                granted_by=self.actor.id,
                require_pin=not self.runtime.pins.fixed,
            )
            granted.append(str(account_id))
        if granted:
            self._grants += len(granted)
            audit.record(
                session,
                "role_key.rotation_grant",
                target_type="role_key",
                target_id=plan.new.id,
                details={"role": str(self.role), "version": plan.new.version, "holders": granted},
            )

    # -- 3. activate ---------------------------------------------------------------------

    def _activate(self, plan: RotationPlan) -> None:
        with self._step() as (session, custody):
            custody.hold_grant_lock(self.role)  # locks in one order: grants, rotation, sealing
            rotation = self._locked(session, plan)
            if rotation.activated_at is not None:
                return
            # Wait for every transaction that read the old key as active to commit its wraps;
            # every transaction after this one reads the new key.
            custody.hold_sealing_lock(self.role, exclusive=True)
            old = session.get(RoleKey, plan.old.id)
            new = session.get(RoleKey, plan.new.id)
            assert old is not None and new is not None  # nosec B101  # the plan's rows, locked
            if old.status != RoleKeyStatus.ACTIVE or new.status != RoleKeyStatus.PENDING:
                raise Conflict(f"the {self.role} keys changed during the rotation; run it again")
            if not custody.is_pinned(new):
                raise PinRequired(pin_request(session, self.runtime, rotation.id))
            custody.require_pinned(new)
            old.status = RoleKeyStatus.RETIRING
            new.status = RoleKeyStatus.ACTIVE
            new.activated_at = rotation.activated_at = custody.now
            audit.record(
                session,
                "role_key.activate",
                target_type="role_key",
                target_id=new.id,
                details={
                    "role": str(self.role),
                    "version": new.version,
                    "retiring_version": old.version,
                    "fingerprint": new.fingerprint,
                },
            )

    def _locked(self, session: Session, plan: RotationPlan) -> RoleKeyRotation:
        return locked_rotation(session, plan.rotation_id, self.role)

    # -- 5. retire -----------------------------------------------------------------------

    def _retire(self, plan: RotationPlan, successors: list[RoleKey]) -> None:
        """Retire the old key and the successors made before the rotation, in one step."""
        retiring = [plan.old, *successors]
        with self._step() as (session, custody):
            custody.hold_grant_lock(self.role)
            rotation = self._locked(session, plan)
            if any(remaining_wraps(session, self.holder, key.key_id) for key in retiring):
                raise Conflict(f"{self.role} wraps appeared during the sweep; run it again")
            # Holders granted the old key by a colleague during the rotation keep access.
            self._grant_missing(session, custody, plan)
            ids = [key.id for key in retiring]
            removed = rows_changed(
                session.execute(delete(RoleKeyGrant).where(RoleKeyGrant.role_key_id.in_(ids)))
            )
            for key in retiring:
                row = session.get(RoleKey, key.id)
                assert row is not None  # nosec B101  # the plan's keys, locked by this step
                row.status = RoleKeyStatus.RETIRED
                row.retired_at = custody.now
            rotation.finished_at = custody.now
            rotation.cursor = None
            audit.record(
                session,
                "role_key.retire",
                target_type="role_key",
                target_id=plan.old.id,
                details={
                    "role": str(self.role),
                    "version": plan.old.version,
                    "grants_removed": removed,
                    "resealed": rotation.resealed,
                    "successors_retired": [key.version for key in successors],
                },
            )
        # Unpinned only once the retirement is committed: a retiring key still opens wraps
        # and must stay pinned until then (a run stopped here is unpinned by the next one).
        if not self.runtime.pins.fixed:
            self.runtime.pins.retire(self.role, [plan.old.fingerprint])
