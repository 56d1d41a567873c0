"""The world a database writer attacks to plant a key, and what they write and read back.

``key_holders`` makes the honest side: role keys initialised, a member, and the signed-in
sessions of the three holders. The rest is the attacker's raw SQL (a personal key swapped for
theirs, a grant planted) and the reads that show what it got them: the conversations started,
the grants held, the sessions issued. The service learns of the writes only by reading the
rows later.

Used by ``tests/security/test_database_writer.py`` (personal keys and conversation wraps),
``tests/security/test_database_writer_role_keys.py`` (role keys, their rows and grants) and
``tests/security/test_database_writer_http.py`` (the same refusals over HTTP).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select

from access_control.roles import Role
from medchat.identity.principal import Principal
from medchat.models import AuthToken, Conversation, KeyRole, PersonalKey, RoleKey, RoleKeyGrant
from medchat.services.context import ServiceContext
from medchat.services.role_keys import RoleKeyService
from tests.support.accounts import Person, init_role_keys, make_member, make_staff
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql

SWAP_PERSONAL_KEY = (
    "UPDATE personal_keys SET public_key = :public_key, key_id = :key_id"
    " WHERE account_id = :account_id AND retired_at IS NULL"
)
INSERT_GRANT = (
    "INSERT INTO role_key_grants (id, role_key_id, account_id, wrap, granted_by, created_at)"
    " VALUES (:id, :role_key_id, :account_id, :wrap, NULL, :created_at)"
)


@dataclass(repr=False)
class World:
    """Role keys initialised, a member, and the signed-in sessions of the three holders."""

    clinician: Person
    compliance: Person
    member: Person
    sessions: dict[str, Principal]


def key_holders(runtime: ServiceContext) -> World:
    """Create both first holders, run ``keys init``, add a member and sign all three in."""
    clinician = make_staff(runtime, Role.CLINICIAN)
    compliance = make_staff(runtime, Role.COMPLIANCE)
    init_role_keys(runtime, clinician, compliance)
    member = make_member(runtime)
    sessions = {
        "clinician": sign_in(runtime, clinician).principal,
        "compliance": sign_in(runtime, compliance).principal,
        "member": sign_in(runtime, member).principal,
    }
    return World(clinician, compliance, member, sessions)


def conversation_count(runtime: ServiceContext, member_id: uuid.UUID) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(
            select(func.count())
            .select_from(Conversation)
            .where(Conversation.member_id == member_id)
        )


def grants_of(runtime: ServiceContext, account_id: uuid.UUID) -> list[uuid.UUID]:
    with runtime.database.transaction() as session:
        return list(
            session.scalars(
                select(RoleKeyGrant.role_key_id).where(RoleKeyGrant.account_id == account_id)
            )
        )


def personal_key_row(runtime: ServiceContext, account_id: uuid.UUID) -> PersonalKey:
    with runtime.database.transaction() as session:
        row = runtime.custody(session).personal_key(account_id)
        assert row is not None
        return row


def active_role_key(runtime: ServiceContext, role: KeyRole) -> RoleKey:
    with runtime.database.transaction() as session:
        return runtime.custody(session).active_role_key(role)


def grant(runtime: ServiceContext, actor: Principal, colleague_id: uuid.UUID) -> str:
    with runtime.database.transaction() as session:
        return RoleKeyService(session, runtime).grant(actor, KeyRole.PHYSICIAN, colleague_id)


def plant_grant(runtime, role_key_id, account_id, wrap) -> None:
    execute_sql(
        runtime,
        INSERT_GRANT,
        id=uuid.uuid4(),
        role_key_id=role_key_id,
        account_id=account_id,
        wrap=wrap,
        created_at=runtime.clock.now(),
    )


def session_count(runtime, account_id) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(
            select(func.count()).select_from(AuthToken).where(AuthToken.account_id == account_id)
        )
