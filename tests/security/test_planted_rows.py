"""No planted or altered row makes the server seal, grant or sign in (SECURITY-MODEL 10).

The class test of the database-writer threat. It does not list attacks: it walks the schema.

1. Every table of the metadata declares what protects it (``__row_integrity__``: tagged,
   covered by a mechanism of its own, or inert, with the reason); a new table that declares
   nothing fails here. A tagged table's tag covers its id and every foreign key.
2. For every tagged table, every deciding column, altered through SQL on a genuine row, makes
   the row refused when the server loads it (409 ``row_integrity_failed``, audited).
3. For every tagged table, rows are planted (copies of genuine rows naming the attacker: a
   member who registered themselves) and genuine rows are altered to name the attacker; then
   the server does its work: clinician and member requests (which drain the re-wrap queue),
   sign-in, physician and archive rotations, retention, a reset confirmation, a retrieval
   approval and opening. Afterwards no wrap, grant or session names a key or account that was
   not legitimately there, and the attacker's own key (their password opens it from a copy of
   the database) opens no wrap or grant but their own.

On PostgreSQL the attacker's statements run as ``medchat_app`` (``deploy/postgres-roles.sql``):
the login the application itself has, no more.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import UniqueConstraint, Uuid, bindparam, select, text
from sqlalchemy.exc import DataError, IntegrityError

from access_control import hybrid_kem
from access_control.roles import Role
from medchat.db import Base, UtcDateTime
from medchat.errors import MedchatError, RowIntegrityFailure
from medchat.keys.member_rewrap import RewrapQueue
from medchat.models import (
    Account,
    AuditEntry,
    AuthToken,
    ConversationKeyWrap,
    KeyRole,
    NotificationKind,
    PersonalKey,
    RoleKeyGrant,
)
from medchat.models.integrity import integrity_of, tagged
from medchat.services.accounts import AccountService
from medchat.services.clinician_conversations import ClinicianConversationService
from medchat.services.context import ServiceContext
from medchat.services.email_change import EmailChangeService
from medchat.services.notifications import NotificationPreferences, PushSubscriptions, enqueue
from medchat.services.notify_worker import NotifyWorker
from medchat.services.password_reset import PasswordResetService
from medchat.services.restrictions import RestrictionService
from medchat.services.retrieval import RetrievalService
from medchat.services.role_keys import RoleKeyService
from medchat.storage.row_integrity import TAGGER
from tests.support.accounts import Person, bearer, login, make_member, make_staff
from tests.support.archive import seal
from tests.support.messaging import ask, care_team, give_consent
from tests.support.retention import run as retention_run
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
#: A closed port on this host: deliveries fail at once, and are retried later.
PUSH_SUBSCRIPTION = {
    "endpoint": "http://127.0.0.1:9/push/victim",
    "p256dh": "BEA4EuUQ_bu0NF13yj9jO1ZJdGkDIx5dqObaR48mtkQnv3oaiKYxyXNivg-"
    "LnqDr2DRmlmwM_HZMy9l-mNBsCkE",
    "auth": "AAECAwQFBgcICQoLDA0ODw",
}
PEOPLE = ("clinician", "colleague", "compliance", "second_officer", "victim", "attacker")


# -- 1. every table declares what protects it --------------------------------------------------


def undeclared(tables: dict[str, type]) -> list[str]:
    """Tables with no declaration, or a declaration that does not hold for the table."""
    problems = []
    for name, cls in tables.items():
        spec = integrity_of(cls)
        if spec is None:
            problems.append(f"{name}: no __row_integrity__")
            continue
        if spec.kind != "tagged":
            if len(spec.reason) < 20:
                problems.append(f"{name}: {spec.kind} needs its reason")
            continue
        table = cls.__table__  # type: ignore[attr-defined]
        if "row_tag" not in table.c:
            problems.append(f"{name}: no row_tag column")
        if spec.columns[:1] != ("id",):
            problems.append(f"{name}: the tag starts with the row's id")
        for column in spec.columns:
            if column not in table.c:
                problems.append(f"{name}: tags a column it does not have: {column}")
        for key in table.foreign_keys:
            if key.parent.name not in spec.columns:
                problems.append(f"{name}: foreign key {key.parent.name} is not tagged")
    return problems


def test_every_table_of_the_schema_declares_what_protects_it():
    assert set(MAPPERS) == set(Base.metadata.tables)
    assert undeclared(MAPPERS) == []
    assert {"accounts", "auth_tokens", "role_key_grants", "rewrap_requests"} <= set(TAGGED)


def test_the_declaration_check_can_fail():
    class Undeclared:
        __tablename__ = "undeclared"

    assert undeclared({"undeclared": Undeclared}) == ["undeclared: no __row_integrity__"]

    class Shy:  # a grant table whose tag forgets who holds the grant
        __table__ = MAPPERS["role_key_grants"].__table__  # type: ignore[attr-defined]
        __row_integrity__ = tagged("id", "wrap")

    assert "grants: foreign key account_id is not tagged" in undeclared({"grants": Shy})


# -- the world and the attacker ----------------------------------------------------------------


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


def _personal_key(runtime: ServiceContext, account_id: uuid.UUID) -> PersonalKey:
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
        assert _count(runtime, name), f"the world has no row of {name}"
    return World(
        team.clinician,
        colleague,
        team.compliance,
        second,
        victim,
        attacker,
        victim_conversation,
        attacker_conversation,
        _personal_key(runtime, attacker.id),
        retrieval.id,
    )


@pytest.fixture
def world(client, runtime) -> World:
    return build_world(client, runtime)


def _count(runtime: ServiceContext, table: str) -> int:
    with runtime.database.engine.connect() as connection:
        return connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


@pytest.fixture
def as_app_role(runtime: ServiceContext) -> str | None:
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


def attacker_sql(runtime: ServiceContext, role: str | None, statement: str, **params: Any) -> int:
    """One statement as the database writer: the app's role on PostgreSQL, committed."""
    typed = [
        bindparam(name, type_=Uuid() if isinstance(value, uuid.UUID) else UtcDateTime())
        for name, value in params.items()
        if isinstance(value, uuid.UUID) or hasattr(value, "tzinfo")
    ]
    with runtime.database.engine.begin() as connection:
        if role is not None:
            connection.execute(text(f"SET LOCAL ROLE {role}"))
        return connection.execute(text(statement).bindparams(*typed), params).rowcount


def _rows(runtime: ServiceContext, table: str) -> list[dict[str, Any]]:
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


def _write(
    runtime: ServiceContext, role: str | None, statement: str, table: str, values: dict
) -> None:
    with runtime.database.engine.begin() as connection:
        if role is not None:
            connection.execute(text(f"SET LOCAL ROLE {role}"))
        connection.execute(text(statement).bindparams(*_typed(table, values)), values)


def _attacker_value(
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


def _attacker_values(
    runtime: ServiceContext, world: World, table: str, column: str, current: Any
) -> list[Any]:
    """The attacker's value, then for a foreign key every other row it may name.

    A unique constraint refuses some of them (a conversation's epoch numbers, an account's
    device labels), and which ones depends on the row the database returned first: trying
    them all keeps a column from going unproven by the luck of the draw.
    """
    first = _attacker_value(runtime, world, table, column, current)
    values = [] if first is None else [first]
    for key in Base.metadata.tables[table].c[column].foreign_keys:
        values += [v for v in _referenced_other_than(runtime, key.column, current) if v != first]
    return values


def _load_every_row(runtime: ServiceContext, cls: type) -> None:
    with runtime.database.transaction() as session:
        list(session.scalars(select(cls)))


# -- 2. every deciding column of every tagged table is covered ---------------------------------


def test_the_attackers_value_differs_from_every_stored_one(runtime, world):
    """The alteration below takes whichever row the database returns first, and PostgreSQL's
    order varies: so every row of every tagged table must get a value that alters it. (CI once
    drew the attacker's own known device, and ``account_id`` was written back unchanged.)"""
    unaltered = [
        f"{table}.{column} of {row['id']}"
        for table in sorted(TAGGED)
        for row in _rows(runtime, table)
        for column in integrity_of(TAGGED[table]).columns  # type: ignore[union-attr]
        if column != "id"
        and _attacker_value(runtime, world, table, column, row[column]) == row[column]
    ]
    assert not unaltered


@pytest.mark.parametrize("table", sorted(TAGGED))
def test_altering_any_deciding_column_gets_the_row_refused(runtime, world, as_app_role, table):
    cls = TAGGED[table]
    columns = integrity_of(cls).columns  # type: ignore[union-attr]
    genuine = _rows(runtime, table)[0]
    _load_every_row(runtime, cls)  # the genuine rows load
    refused_before = _audited(runtime, "integrity.row_refused")
    altered = 0
    unalterable: list[str] = []
    for column in columns:
        if column == "id":
            continue
        for value in _attacker_values(runtime, world, table, column, genuine[column]):
            assert value != genuine[column], f"{table}.{column}: the attacker wrote it back"
            try:
                _write(
                    runtime,
                    as_app_role,
                    f"UPDATE {table} SET {column} = :{column} WHERE id = :id",
                    table,
                    {column: value, "id": genuine["id"]},
                )
            except (IntegrityError, DataError):
                continue  # the schema itself refuses this value: try the next
            break
        else:
            unalterable.append(column)  # the schema admits no other value here
            continue
        altered += 1
        with pytest.raises(RowIntegrityFailure):
            _load_every_row(runtime, cls)
        _write(
            runtime,
            None,
            f"UPDATE {table} SET {column} = :{column} WHERE id = :id",
            table,
            {column: genuine[column], "id": genuine["id"]},
        )
        _load_every_row(runtime, cls)
    # Only a column that a unique constraint pairs with another (a conversation's epoch
    # numbers) may hold out against every single-column write; any other went unproven.
    paired = {
        column.name
        for constraint in Base.metadata.tables[table].constraints
        if isinstance(constraint, UniqueConstraint) and len(constraint.columns) > 1
        for column in constraint.columns
    }
    assert set(unalterable) <= paired, f"{table}: no value could be written to {unalterable}"
    assert altered >= len(columns) // 2, "too few columns could be altered to prove anything"
    assert _audited(runtime, "integrity.row_refused") > refused_before


def _audited(runtime: ServiceContext, action: str) -> int:
    with runtime.database.transaction() as session:
        return len(session.scalars(select(AuditEntry.id).where(AuditEntry.action == action)).all())


# -- 3. planted and altered rows, then the server's work ---------------------------------------


def plant_rows(runtime: ServiceContext, world: World, role: str | None, table: str) -> int:
    """Copies of each genuine row naming the attacker, and each genuine row altered so.

    Returns how many of those writes the schema took: a unique constraint may refuse any one
    of them, but a table where it refused them all was never attacked at all.
    """
    taken = 0
    columns = integrity_of(TAGGED[table]).columns  # type: ignore[union-attr]
    for genuine in _rows(runtime, table):
        planted = dict(genuine, id=uuid.uuid4())
        for column in columns[1:]:
            if column.endswith(("_id", "_by")) or column in ("role", "status", "wrap"):
                value = _attacker_value(runtime, world, table, column, genuine[column])
                planted[column] = genuine[column] if value is None else value
        if "token_hash" in planted:
            planted["token_hash"] = hybrid_kem_free_hash(ATTACKER_TOKEN)
        if "key" in planted:
            planted["key"] = f"planted-{planted['id']}"
        with contextlib.suppress(Exception):  # a unique constraint may refuse one; go on
            names = ", ".join(planted)
            marks = ", ".join(f":{name}" for name in planted)
            _write(
                runtime,
                role,
                f"INSERT INTO {table} ({names}) VALUES ({marks})",
                table,
                planted,
            )
            taken += 1
        for column in columns[1:]:
            if column.endswith("_id") or column.endswith("_by") or column == "role":
                with contextlib.suppress(Exception):
                    _write(
                        runtime,
                        role,
                        f"UPDATE {table} SET {column} = :{column} WHERE id = :id",
                        table,
                        {
                            column: _attacker_value(runtime, world, table, column, genuine[column]),
                            "id": genuine["id"],
                        },
                    )
                    taken += 1
    return taken


def hybrid_kem_free_hash(token: str) -> bytes:
    from access_control import crypto

    return crypto.token_hash(token)


def server_work(client: Any, runtime: ServiceContext, world: World) -> list[str]:
    """What the server does on its own and for its legitimate users; returns what failed.

    Refusals (``MedchatError``: 4xx, integrity refusals) are the expected answers; anything
    else, and any HTTP 500, is a failure of this test.
    """
    failures: list[str] = []

    def attempt(name: str, action: Any) -> None:
        try:
            action()
        except MedchatError:
            pass
        except Exception as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")

    def http(name: str, person: Person, method: str, path: str) -> None:
        try:
            tokens = login(client, runtime, person)
        except AssertionError:
            return  # sign-in refused: an answer, not a failure
        response = client.open(path, method=method, headers=bearer(tokens))
        if response.status_code >= 500:
            failures.append(f"{name}: HTTP {response.status_code} {response.get_data()[:200]!r}")

    http("clinician queue", world.clinician, "GET", "/api/v1/clinician/queue")
    http("colleague queue", world.colleague, "GET", "/api/v1/clinician/queue")
    http("victim list", world.victim, "GET", "/api/v1/conversations")
    http("attacker list", world.attacker, "GET", "/api/v1/conversations")
    http(
        "attacker reads the victim",
        world.attacker,
        "GET",
        f"/api/v1/conversations/{world.victim_conversation}",
    )

    # The token the attacker planted hashes for, used as they would use it.
    planted = {"Authorization": f"Bearer {ATTACKER_TOKEN}"}
    for path in ("/api/v1/me", "/api/v1/clinician/queue", "/api/v1/admin/audit"):
        response = client.get(path, headers=planted)
        if response.status_code < 400 or response.status_code >= 500:
            failures.append(f"planted token on {path}: HTTP {response.status_code}")
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": ATTACKER_TOKEN})
    if response.status_code < 400 or response.status_code >= 500:
        failures.append(f"planted token refreshed: HTTP {response.status_code}")

    def drain() -> None:
        actor = sign_in(runtime, world.clinician).principal
        with runtime.database.transaction() as session:
            RewrapQueue(session, runtime).drain(actor, 100)

    attempt("re-wrap drain", drain)
    attempt("physician rotation", lambda: rotate(runtime, world.clinician))
    attempt("archive rotation", lambda: rotate(runtime, world.compliance, KeyRole.ARCHIVE))
    attempt("retention", lambda: retention_run(runtime))
    attempt("notifications", lambda: NotifyWorker(runtime).run())

    def reset_with_planted_token() -> None:
        with runtime.database.transaction() as session:
            PasswordResetService(session, runtime).confirm(
                ATTACKER_TOKEN, "a brand new passphrase 1984!", None
            )

    attempt("reset confirmation", reset_with_planted_token)

    def enroll_with_planted_token() -> None:
        with runtime.database.transaction() as session:
            AccountService(session, runtime).begin_enrollment(
                ATTACKER_TOKEN, "a brand new passphrase 1984!"
            )

    attempt("enrollment", enroll_with_planted_token)

    def approve_and_open() -> None:
        second = sign_in(runtime, world.second_officer).principal
        with runtime.database.transaction() as session:
            RetrievalService(session, runtime).approve(second, world.retrieval_id)
        first = sign_in(runtime, world.compliance).principal
        with runtime.database.transaction() as session:
            RetrievalService(session, runtime).content(first, world.retrieval_id)

    attempt("retrieval", approve_and_open)
    attempt("attacker signs in", lambda: sign_in(runtime, world.attacker))
    return failures


@dataclass(frozen=True)
class Facts:
    """What the server itself wrote (rows whose tag verifies): wrap recipients, grant holders,
    accounts with sessions; and the victim's current personal key and password hash."""

    wraps: frozenset[tuple[uuid.UUID, str, bytes]]
    grant_holders: frozenset[uuid.UUID]
    session_holders: frozenset[uuid.UUID]
    victim_key: bytes
    password_hashes: dict[uuid.UUID, bytes | None]


def _verified(runtime: ServiceContext, cls: type) -> list[dict[str, Any]]:
    tagger = runtime.database.info[TAGGER]
    columns = integrity_of(cls).columns  # type: ignore[union-attr]
    return [
        row
        for row in _rows(runtime, cls.__tablename__)  # type: ignore[attr-defined]
        if tagger.verify(cls.__tablename__, [row[c] for c in columns], row["row_tag"])  # type: ignore[attr-defined]
    ]


def facts(runtime: ServiceContext, world: World) -> Facts:
    with runtime.database.engine.connect() as connection:
        wraps = connection.execute(
            select(
                ConversationKeyWrap.conversation_id,
                ConversationKeyWrap.holder,
                ConversationKeyWrap.recipient_key_id,
            )
        ).all()
        password_hashes = dict(connection.execute(select(Account.id, Account.password_hash)).all())
    return Facts(
        frozenset(tuple(row) for row in wraps),
        frozenset(row["account_id"] for row in _verified(runtime, RoleKeyGrant)),
        frozenset(row["account_id"] for row in _verified(runtime, AuthToken)),
        _personal_key(runtime, world.victim.id).key_id,
        password_hashes,
    )


def opened_by_attacker(runtime: ServiceContext, world: World) -> list[str]:
    """Every secret a copy of the database gives the attacker's own key: a conversation key
    (it matches the conversation's commitment) or a role key (it matches a role public key),
    other than the keys of the attacker's own conversation."""
    from access_control import crypto
    from access_control.password_kdf import open_with_password
    from medchat.keys.personal_keys import _PERSONAL_AAD
    from medchat.keys.wrap_binding import wrap_purpose
    from medchat.models import Conversation, RoleKey

    key = _personal_key(runtime, world.attacker.id)
    seed = open_with_password(
        key.private_key_ciphertext,
        world.attacker.password,
        aad=crypto.associated_data(_PERSONAL_AAD, world.attacker.id, key.id),
    )
    private = hybrid_kem.load_private_key(seed)
    opened = []
    with runtime.database.engine.connect() as connection:
        commitments = dict(
            connection.execute(select(Conversation.id, Conversation.key_commitment)).all()
        )
        role_publics = set(connection.execute(select(RoleKey.public_key)).scalars())
        wraps = connection.execute(
            select(
                ConversationKeyWrap.conversation_id,
                ConversationKeyWrap.holder,
                ConversationKeyWrap.wrap,
            )
        ).all()
        grants = connection.execute(
            select(RoleKeyGrant.id, RoleKeyGrant.role_key_id, RoleKeyGrant.wrap)
        ).all()
    for conversation_id, holder, wrap in wraps:
        if conversation_id == world.attacker_conversation:
            continue
        with contextlib.suppress(crypto.DecryptionFailed, crypto.IntegrityCheckFailed):
            dek = hybrid_kem.unwrap_key(
                private,
                wrap,
                recipient_id=world.attacker.id,
                context_id=conversation_id,
                purpose=wrap_purpose(holder),
            )
            crypto.verify_key_commitment(dek, commitments[conversation_id], conversation_id)
            opened.append(f"{holder} wrap of {conversation_id}")
    for grant_id, role_key_id, wrap in grants:
        with contextlib.suppress(crypto.DecryptionFailed, ValueError):
            role_seed = hybrid_kem.unwrap_key(
                private,
                wrap,
                recipient_id=world.attacker.id,
                context_id=role_key_id,
                purpose=hybrid_kem.PURPOSE_ROLE_KEY,
            )
            if hybrid_kem.load_private_key(role_seed).public_key_bytes in role_publics:
                opened.append(f"grant {grant_id}")
    return opened


@pytest.mark.parametrize("table", sorted(TAGGED))
def test_planted_rows_make_the_server_hand_nothing_to_the_attacker(
    client, runtime, world, as_app_role, table
):
    before = facts(runtime, world)
    assert plant_rows(runtime, world, as_app_role, table), f"nothing could be planted in {table}"
    failures = server_work(client, runtime, world)
    after = facts(runtime, world)

    assert failures == []
    new_wraps = after.wraps - before.wraps
    to_attacker = [w for w in new_wraps if w[2] == world.attacker_key.key_id]
    assert [w for w in to_attacker if w[0] != world.attacker_conversation] == []
    # Grants: the same holders as before (a rotation re-grants them), never the attacker.
    assert world.attacker.id not in after.grant_holders
    assert after.grant_holders <= before.grant_holders
    # Sessions: only people who signed in themselves (each of them did, in server_work);
    # every password and the victim's key are as they were (no planted reset or enrollment
    # went through: nothing in the server's work changes a password legitimately).
    people = {getattr(world, name).id for name in PEOPLE}
    assert after.session_holders <= people
    assert after.victim_key == before.victim_key
    assert after.password_hashes == before.password_hashes
    # A copy of the database and the attacker's own password open nothing but their own.
    assert opened_by_attacker(runtime, world) == []


def test_the_planted_row_harness_can_fail(client, runtime, world, as_app_role):
    """The same checks see a grant that really is sealed to the attacker's key."""
    holder = sign_in(runtime, world.clinician).principal
    # The one way a real grant reaches a member's key: the server is made to seal it. Done
    # here by hand, as the broken code of the issue did, to show the checks notice.
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        physician = custody.active_role_key(KeyRole.PHYSICIAN)
        held = holder.keyring.role_keys(KeyRole.PHYSICIAN)[0]
        custody.grant(physician, held.key, world.attacker.id, granted_by=holder.id)
    assert opened_by_attacker(runtime, world) != []
    assert world.attacker.id in facts(runtime, world).grant_holders
