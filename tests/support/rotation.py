"""Role-key rotation helpers: a care team with a colleague, conversations, reading them back.

Holders act with freshly signed-in keyrings (``sign_in``), exactly as a request or ``medchat
keys rotate`` would: what a rotation left behind is read with the keys a person gets today.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from access_control.keyring import Keyring
from access_control.roles import Role
from medchat.errors import NotFound
from medchat.keys.custody import KeyCustody
from medchat.keys.rotation import RotationResult, RotationService
from medchat.models import (
    AuditEntry,
    Conversation,
    ConversationKeyWrap,
    Holder,
    KeyRole,
    RoleKey,
    RoleKeyGrant,
    RoleKeyStatus,
)
from medchat.services.context import ServiceContext
from medchat.services.role_keys import RoleKeyService
from tests.support.accounts import Person, init_role_keys, make_member, make_staff
from tests.support.conversations import start_conversation
from tests.support.messaging import care_team
from tests.support.sessions import STAFF_ADDRESS, sign_in


@dataclass
class RotationWorld:
    """Two physician holders (one with ``colleague=False``), the compliance officer, and
    members' conversations."""

    clinician: Person
    colleague: Person | None
    compliance: Person
    members: list[Person]
    #: conversation id -> its DEK (kept by the test to compare what holders open)
    deks: dict[uuid.UUID, bytes]


def rotation_world(
    runtime: ServiceContext, conversations: int = 6, members: int = 2, *, colleague: bool = True
) -> RotationWorld:
    """``colleague=False``: no second physician holder (``colleague`` is then None), for a
    test of one step that needs none (a third of the world's cost)."""
    team = care_team(runtime)
    second = None
    if colleague:
        second = make_staff(runtime, Role.CLINICIAN, first_name="Bea", last_name="Roux")
        grant(runtime, team.clinician, second)
    people = [make_member(runtime) for _ in range(members)]
    principals = [sign_in(runtime, person).principal for person in people]
    deks = {}
    for n in range(conversations):
        started = start_conversation(
            runtime, principals[n % members], subject=f"subject {n}", bodies=[f"question {n}"]
        )
        deks[started.id] = started.dek
    return RotationWorld(team.clinician, second, team.compliance, people, deks)


def grant(runtime: ServiceContext, holder: Person, colleague: Person) -> None:
    actor = sign_in(runtime, holder).principal
    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).grant(actor, KeyRole.PHYSICIAN, colleague.id)


def team_with_colleague(runtime: ServiceContext) -> tuple[Person, Person, Person]:
    """The first physician and archive holders, and a colleague granted the physician key:
    ``(clinician, compliance, colleague)``, with no conversation (what ``KeyCustody``'s tests in
    ``tests/unit/services/test_custody*.py`` start from)."""
    clinician = make_staff(runtime, Role.CLINICIAN)
    compliance = make_staff(runtime, Role.COMPLIANCE)
    init_role_keys(runtime, clinician, compliance)
    colleague = make_staff(runtime, Role.CLINICIAN, first_name="Bea", last_name="Roux")
    grant(runtime, clinician, colleague)
    return clinician, compliance, colleague


def revoke(
    runtime: ServiceContext, holder: Person, colleague: Person, actor: Any = None
) -> list[str]:
    """``holder`` revokes ``colleague``'s physician key; ``actor``: a session of ``holder``
    already signed in (signing in again moves the test clock)."""
    actor = actor or sign_in(runtime, holder).principal
    with runtime.database.transaction() as session:
        return RoleKeyService(session, runtime).revoke(
            actor, KeyRole.PHYSICIAN, colleague.id, password=holder.password, address=STAFF_ADDRESS
        )


def revoke_and_put_back(runtime: ServiceContext, holder: Person, colleague: Person) -> None:
    """A rollback, not a forgery: ``holder`` revokes ``colleague`` a minute on, then the grant
    row the server tagged before the revocation is restored whole (its tag verifies)."""
    grants = RoleKeyGrant.__table__
    with runtime.database.engine.connect() as connection:
        saved = dict(
            connection.execute(select(grants).where(grants.c.account_id == colleague.id))
            .one()
            ._mapping
        )
    runtime.clock.advance(seconds=60)
    revoke(runtime, holder, colleague)
    with runtime.database.engine.begin() as connection:
        connection.execute(grants.insert().values(**saved))


def rotate(
    runtime: ServiceContext, person: Person, role: KeyRole = KeyRole.PHYSICIAN, **options: Any
) -> RotationResult:
    """``medchat keys rotate`` as ``person`` (signed in now), through the real service."""
    run_options = {k: options.pop(k) for k in ("max_batches", "prepare_only") if k in options}
    actor = sign_in(runtime, person).principal
    return RotationService(runtime, actor, role, **options).run(**run_options)


def open_as(runtime: ServiceContext, keyring: Keyring, conversation_id: uuid.UUID) -> bytes:
    """The first epoch's DEK as the physician holder with this keyring opens it (NotFound if
    it cannot): the DEK the conversation was started with."""
    with runtime.database.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        keys = runtime.conversation_keys(session)
        return keys.open_key(conversation, keyring, Holder.PHYSICIAN).of(1)


def readable_by(runtime: ServiceContext, keyring: Keyring, deks: dict[uuid.UUID, bytes]) -> int:
    """How many of the conversations this keyring opens to their true DEK."""
    opened = 0
    for conversation_id, dek in deks.items():
        with contextlib.suppress(NotFound):
            opened += open_as(runtime, keyring, conversation_id) == dek
    return opened


def physician_keys(runtime: ServiceContext) -> dict[int, RoleKey]:
    with runtime.database.transaction() as session:
        rows = session.scalars(select(RoleKey).where(RoleKey.role == KeyRole.PHYSICIAN))
        return {row.version: row for row in rows}


def physician_key(custody: KeyCustody) -> RoleKey:
    """The active physician key, read in ``custody``'s transaction."""
    return custody.role_keys(KeyRole.PHYSICIAN, RoleKeyStatus.ACTIVE)[0]


def wraps_sealed_to(runtime: ServiceContext, key: RoleKey) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(  # type: ignore[no-any-return]
            select(func.count())
            .select_from(ConversationKeyWrap)
            .where(ConversationKeyWrap.recipient_key_id == key.key_id)
        )


def audit_details(runtime: ServiceContext, action: str) -> list[dict[str, Any]]:
    import json

    with runtime.database.transaction() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
        )
        return [json.loads(entry.details) for entry in entries]


def statuses(runtime: ServiceContext) -> dict[int, str]:
    return {version: row.status for version, row in physician_keys(runtime).items()}


def locks_taken_in(monkeypatch: Any, step: str) -> list[tuple[str, str, bool]]:
    """The advisory locks (purpose, role, exclusive) the rotation's ``step`` asks for, in
    order, at its last call. Asked for on either database (SQLite's needs none, and
    ``KeyCustody._advisory_lock`` returns there): what the step asks is what is checked."""
    taken: list[tuple[str, str, bool]] = []
    lock = KeyCustody._advisory_lock
    original = getattr(RotationService, step)

    def noted(custody: KeyCustody, purpose: str, role: str, *, exclusive: bool) -> None:
        taken.append((purpose, str(role), exclusive))
        lock(custody, purpose, role, exclusive=exclusive)

    def recorded(service: RotationService, *args: Any) -> Any:
        taken.clear()
        monkeypatch.setattr(KeyCustody, "_advisory_lock", noted)
        try:
            return original(service, *args)
        finally:
            monkeypatch.setattr(KeyCustody, "_advisory_lock", lock)

    monkeypatch.setattr(RotationService, step, recorded)
    return taken
