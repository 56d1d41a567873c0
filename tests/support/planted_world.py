"""The world the planted-row tests attack, and the attacker's writes.

``build_world`` makes a row in every tagged table the way the server makes it: a care team
with role keys granted, a victim and a self-registered attacker (Mallory) with their own
questions, sealed archive records and a retrieval request, a reset, an email change, a pending
rotation, a re-wrap request, a claim, notifications, a lifted restriction. The rest is what a
database writer who registered as the attacker can do to those rows through SQL: the value
they would put in a column (``attacker_value``), every value a foreign key may take
(``attacker_values``), and the write itself, on PostgreSQL as the application's own login
(``app_role``, ``deploy/postgres-roles.sql``).

Used by ``tests/security/test_planted_rows.py`` (every deciding column, altered, gets its row
refused) and ``tests/security/test_planted_rows_server_work.py`` (planted rows, then the
server's work, hand the attacker nothing); their fixtures are in ``tests/security/conftest.py``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.exc import DataError, IntegrityError

from access_control import hybrid_kem
from access_control.roles import Role
from medchat.db import Base, UtcDateTime
from medchat.keys.member_rewrap import RewrapQueue
from medchat.models import KeyRole, NotificationKind, PersonalKey
from medchat.models.integrity import integrity_of
from medchat.services.clinician_conversations import ClinicianConversationService
from medchat.services.context import ServiceContext
from medchat.services.email_change import EmailChangeService
from medchat.services.notifications import NotificationPreferences, PushSubscriptions, enqueue
from medchat.services.password_reset import PasswordResetService
from medchat.services.restrictions import RestrictionService
from medchat.services.retrieval import RetrievalService
from medchat.services.role_keys import RoleKeyService
from tests.support.accounts import Person, login, make_member, make_staff
from tests.support.archive import seal
from tests.support.messaging import ask, care_team, give_consent
from tests.support.rotation import rotate
from tests.support.sessions import attached, sign_in
from tests.support.tampering import flipped

MAPPERS = {mapper.local_table.name: mapper.class_ for mapper in Base.registry.mappers}
TAGGED = {
    name: cls
    for name, cls in sorted(MAPPERS.items())
    if (spec := integrity_of(cls)) is not None and spec.kind == "tagged"
}
ATTACKER_TOKEN = "mca_attacker-chose-this-token"
#: A recovery code the attacker chose, as a member would type it (``totp`` normalises it).
ATTACKER_RECOVERY_CODE = "ATTK-RCHS-THIS-CODE"
#: A closed port on this host: deliveries fail at once, and are retried later.
PUSH_SUBSCRIPTION = {
    "endpoint": "http://127.0.0.1:9/push/victim",
    "p256dh": "BEA4EuUQ_bu0NF13yj9jO1ZJdGkDIx5dqObaR48mtkQnv3oaiKYxyXNivg-"
    "LnqDr2DRmlmwM_HZMy9l-mNBsCkE",
    "auth": "AAECAwQFBgcICQoLDA0ODw",
}
PEOPLE = ("clinician", "colleague", "compliance", "second_officer", "victim", "attacker")


@dataclass
class World:
    clinician: Person
    colleague: Person
    compliance: Person
    second_officer: Person
    victim: Person
    attacker: Person
    victim_conversation: uuid.UUID
    attacker_conversation: uuid.UUID
    attacker_key: PersonalKey
    retrieval_id: uuid.UUID


def personal_key(runtime: ServiceContext, account_id: uuid.UUID) -> PersonalKey:
    with runtime.database.transaction() as session:
        row = session.scalars(
            select(PersonalKey).where(
                PersonalKey.account_id == account_id, PersonalKey.retired_at.is_(None)
            )
        ).one()
        session.expunge(row)
    return row


def _ask(client: Any, runtime: ServiceContext, person: Person, key: str) -> uuid.UUID:
    tokens = login(client, runtime, person)
    give_consent(client, tokens)
    response = ask(client, tokens, "Is this rash serious?", key=key)
    assert response.status_code == 201, response.get_json()
    return uuid.UUID(response.get_json()["id"])


def build_world(client: Any, runtime: ServiceContext) -> World:
    """A row in every tagged table, each made by the server itself."""
    team = care_team(runtime)
    colleague = make_staff(runtime, Role.CLINICIAN)
    second = make_staff(runtime, Role.COMPLIANCE)
    holder = sign_in(runtime, team.clinician).principal
    officer = sign_in(runtime, team.compliance).principal
    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).grant(holder, KeyRole.PHYSICIAN, colleague.id)
    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).grant(officer, KeyRole.ARCHIVE, second.id)
    victim = make_member(runtime, totp=True, first_name="Victor")
    attacker = make_member(runtime, first_name="Mallory")
    victim_conversation = _ask(client, runtime, victim, "victim-1")
    sealed = _ask(client, runtime, victim, "victim-2")
    attacker_conversation = _ask(client, runtime, attacker, "attacker-1")
    record = seal(runtime, sign_in(runtime, victim).principal, sealed)
    # A second sealed record: a retrieval request re-pointed at it (four eyes on one record,
    # another opened) is an alteration the row tags must catch, and needs a record to name.
    seal(runtime, sign_in(runtime, victim).principal, _ask(client, runtime, victim, "victim-3"))
    with runtime.database.transaction() as session:
        retrieval = RetrievalService(session, runtime).request(
            officer, record.id, "Regulator inquiry 2036/44 about this exchange."
        )
    with runtime.database.transaction() as session:
        PasswordResetService(session, runtime).request(victim.email)
    victim_session = sign_in(runtime, victim).principal
    with runtime.database.transaction() as session:
        EmailChangeService(session, runtime).request(
            attached(victim_session, session),
            victim.password,
            "victor.elsewhere@example.org",
            address="192.0.2.7",
        )
    # A pending rotation (started, not finished) and a re-wrap request left by a reset.
    rotate(runtime, team.clinician, prepare_only=True)
    with runtime.database.transaction() as session:
        key = session.scalars(
            select(PersonalKey).where(
                PersonalKey.account_id == victim.id, PersonalKey.retired_at.is_(None)
            )
        ).one()
        RewrapQueue(session, runtime).enqueue(victim.id, key)
    with runtime.database.transaction() as session:  # a clinician has the victim's question
        ClinicianConversationService(session, runtime).claim(holder, victim_conversation)
    # The victim hears of replies by push and mail (a subscription, choices, an outbox row);
    # every sign-in above remembered its device.
    with runtime.database.transaction() as session:
        NotificationPreferences(session, runtime).set(victim.id, {"push": True, "email": True})
        PushSubscriptions(session, runtime).register(victim.id, **PUSH_SUBSCRIPTION)
        enqueue(session, runtime, NotificationKind.REPLY, victim.id)
    # A restriction of processing, asked and lifted (its row stays, as history).
    with runtime.database.transaction() as session:
        RestrictionService(session, runtime).restrict(victim.id)
    with runtime.database.transaction() as session:
        RestrictionService(session, runtime).lift(victim.id)
    for name in TAGGED:
        assert table_count(runtime, name), f"the world has no row of {name}"
    return World(
        team.clinician,
        colleague,
        team.compliance,
        second,
        victim,
        attacker,
        victim_conversation,
        attacker_conversation,
        personal_key(runtime, attacker.id),
        retrieval.id,
    )


def table_count(runtime: ServiceContext, table: str) -> int:
    with runtime.database.engine.connect() as connection:
        return connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def app_role(runtime: ServiceContext) -> str | None:
    """On PostgreSQL: the application's own login (deploy/postgres-roles.sql), made here."""
    if not runtime.database.is_postgresql:
        return None
    with runtime.database.engine.begin() as connection:
        exists = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = 'medchat_app'"))
        if exists.first() is None:
            connection.execute(text("CREATE ROLE medchat_app NOLOGIN"))
        connection.execute(
            text(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO medchat_app"
            )
        )
        connection.execute(
            text("REVOKE UPDATE, DELETE ON audit_entries, archive_records FROM medchat_app")
        )
    return "medchat_app"


def rows(runtime: ServiceContext, table: str) -> list[dict[str, Any]]:
    columns = Base.metadata.tables[table].c
    with runtime.database.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(*columns))]


def _typed(table: str, values: dict[str, Any]) -> list[Any]:
    columns = Base.metadata.tables[table].c
    return [
        bindparam(name, type_=columns[name].type)
        for name in values
        if isinstance(values[name], uuid.UUID) or hasattr(values[name], "tzinfo")
    ]


def write(
    runtime: ServiceContext, role: str | None, statement: str, table: str, values: dict
) -> None:
    with runtime.database.engine.begin() as connection:
        if role is not None:
            connection.execute(text(f"SET LOCAL ROLE {role}"))
        connection.execute(text(statement).bindparams(*_typed(table, values)), values)


def attacker_value(
    runtime: ServiceContext, world: World, table: str, column: str, current: Any
) -> Any:
    """What a writer who registered as ``world.attacker`` would put in this column: their own
    ids and keys, another genuine row's id (foreign keys must still hold), or a flipped value.
    ``None`` when the schema admits no other value."""
    ids = {
        "account_id": world.attacker.id,
        "member_id": world.attacker.id,
        "requested_by": world.attacker.id,
        "approved_by": world.attacker.id,
        "started_by": world.attacker.id,
        "granted_by": world.attacker.id,
        "personal_key_id": world.attacker_key.id,
        "conversation_id": world.attacker_conversation,
    }
    if column in ids and ids[column] != current:
        return ids[column]
    # A row that already names the attacker (their own token, device, conversation) gets
    # another genuine row's id below: writing their own id back would alter nothing.
    sa_column = Base.metadata.tables[table].c[column]
    for key in sa_column.foreign_keys:
        return _other_referenced(runtime, key.column, current)
    if isinstance(sa_column.type, UtcDateTime):
        return runtime.clock.now().replace(year=runtime.clock.now().year + 5)
    python_type = sa_column.type.python_type
    if python_type is bool:
        return not current
    if python_type is uuid.UUID:
        return uuid.uuid4()
    if python_type is bytes:
        if column == "public_key":
            return world.attacker_key.public_key
        if column == "key_id":
            return world.attacker_key.key_id
        if column == "wrap":  # sealed to the attacker's own key: the header names it
            return hybrid_kem.wrap_key(
                world.attacker_key.public_key,
                bytes(32),
                recipient_id=world.attacker.id,
                context_id=uuid.uuid4(),
                purpose=hybrid_kem.PURPOSE_ROLE_KEY,
            )
        return b"\x01" * 32 if current is None else flipped(current)
    if python_type is int:
        return current + 10
    choices = {
        "role": "clinician" if current != "clinician" else "admin",
        "status": "active" if current != "active" else "approved",
        "kind": "console" if current != "console" else "access",
    }
    if column in choices:
        return choices[column]
    return flipped(f"{current}" if current is not None else "")  # same length: fits the column


def _other_referenced(runtime: ServiceContext, target: Any, current: Any) -> Any:
    """Another existing row a foreign key may name: the last one (the first is often the
    genuine row's own partner, and unique constraints pair them)."""
    others = _referenced_other_than(runtime, target, current)
    return others[0] if others else None


def _referenced_other_than(runtime: ServiceContext, target: Any, current: Any) -> list[Any]:
    """Every other existing row a foreign key may name, the last-returned first."""
    with runtime.database.engine.connect() as connection:
        others = connection.execute(select(target).where(target != current)).scalars().all()
    return list(reversed(others))


def attacker_values(
    runtime: ServiceContext, world: World, table: str, column: str, current: Any
) -> list[Any]:
    """The attacker's value, then for a foreign key every other row it may name.

    A unique constraint refuses some of them (a conversation's epoch numbers, an account's
    device labels), and which ones depends on the row the database returned first: trying
    them all keeps a column from going unproven by the luck of the draw.
    """
    first = attacker_value(runtime, world, table, column, current)
    values = [] if first is None else [first]
    for key in Base.metadata.tables[table].c[column].foreign_keys:
        values += [v for v in _referenced_other_than(runtime, key.column, current) if v != first]
    return values


def alter(
    runtime: ServiceContext, world: World, role: str | None, table: str, row: dict, column: str
) -> bool:
    """Write the attacker's value into ``column`` of this stored row, or, where the schema
    refuses it (a unique constraint, a foreign key), each other value of ``attacker_values``
    until one is taken; False when none was. Every value tried differs from the stored one:
    writing a value back over itself would alter nothing and prove nothing."""
    for value in attacker_values(runtime, world, table, column, row[column]):
        assert value != row[column], f"{table}.{column}: the attacker wrote it back"
        try:
            write(
                runtime,
                role,
                f"UPDATE {table} SET {column} = :{column} WHERE id = :id",
                table,
                {column: value, "id": row["id"]},
            )
        except (IntegrityError, DataError):
            continue  # the schema itself refuses this value: try the next
        return True
    return False


def load_every_row(runtime: ServiceContext, cls: type) -> None:
    with runtime.database.transaction() as session:
        list(session.scalars(select(cls)))
