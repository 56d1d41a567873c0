"""Planted and altered rows, then the server's work: it hands the attacker nothing
(SECURITY-MODEL 10; part 3 of the walk in ``test_planted_rows.py``).

For every tagged table, rows are planted (copies of genuine rows naming the attacker: a member
who registered themselves) and genuine rows are altered to name the attacker; then the server
does its work: clinician and member requests (which drain the re-wrap queue), sign-in,
physician and archive rotations, retention, a reset confirmation, a retrieval approval and
opening. Afterwards no wrap, grant or session names a key or account that was not
legitimately there, and the attacker's own key (their password opens it from a copy of the
database) opens no wrap or grant but their own.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError

from access_control import crypto, hybrid_kem
from medchat.errors import MedchatError
from medchat.keys.member_rewrap import RewrapQueue
from medchat.models import Account, AuthToken, ConversationKeyWrap, KeyRole, RoleKeyGrant
from medchat.models.integrity import integrity_of
from medchat.services.accounts import AccountService
from medchat.services.context import ServiceContext
from medchat.services.notify_worker import NotifyWorker
from medchat.services.password_reset import PasswordResetService
from medchat.services.retrieval import RetrievalService
from medchat.storage.row_integrity import TAGGER
from tests.support.accounts import Person, bearer, login
from tests.support.planted_world import (
    ATTACKER_RECOVERY_CODE,
    ATTACKER_TOKEN,
    PEOPLE,
    TAGGED,
    World,
    alter,
    attacker_value,
    personal_key,
    rows,
    write,
)
from tests.support.retention import run as retention_run
from tests.support.rotation import rotate
from tests.support.sessions import sign_in

#: Secret columns (hashes of what a person presents) and the hash of the attacker's own choice.
SECRETS = {
    "token_hash": crypto.token_hash(ATTACKER_TOKEN),
    "code_hash": crypto.token_hash(ATTACKER_RECOVERY_CODE.lower().replace("-", "")),
}


def _insert(runtime: ServiceContext, role: str | None, table: str, values: dict) -> int:
    """1 when the schema took the row, 0 when a constraint refused it."""
    with contextlib.suppress(IntegrityError, DataError):
        names = ", ".join(values)
        marks = ", ".join(f":{name}" for name in values)
        write(runtime, role, f"INSERT INTO {table} ({names}) VALUES ({marks})", table, values)
        return 1
    return 0


def plant_rows(runtime: ServiceContext, world: World, role: str | None, table: str) -> int:
    """Copies of each genuine row naming the attacker, and each genuine row altered so.

    Returns how many of those writes the schema took: a unique constraint may refuse any one
    of them, but a table where it refused them all was never attacked at all.
    """
    taken = 0
    columns = integrity_of(TAGGED[table]).columns  # type: ignore[union-attr]
    owners = set()
    for genuine in rows(runtime, table):
        if SECRETS.keys() & genuine.keys() and genuine["account_id"] not in owners:
            # The genuine owner's row again, its secret one the attacker knows: a planted
            # token or recovery code that would pass as the victim's own. One for each owner
            # (two alike would match twice, which a single-use check may refuse for that
            # alone), and first, as a secret's hash may be unique: the copy naming the attacker
            # below is the lesser attack.
            owners.add(genuine["account_id"])
            theirs = dict(genuine, id=uuid.uuid4())
            theirs.update({name: hashed for name, hashed in SECRETS.items() if name in genuine})
            taken += _insert(runtime, role, table, theirs)
        planted = dict(genuine, id=uuid.uuid4())
        for column in columns[1:]:
            if column.endswith(("_id", "_by")) or column in ("role", "status", "wrap"):
                value = attacker_value(runtime, world, table, column, genuine[column])
                planted[column] = genuine[column] if value is None else value
        planted.update({name: hashed for name, hashed in SECRETS.items() if name in planted})
        if "key" in planted:
            planted["key"] = f"planted-{planted['id']}"
        taken += _insert(runtime, role, table, planted)  # a unique constraint may refuse it
        for column in columns[1:]:
            if column.endswith(("_id", "_by")) or column == "role":
                taken += alter(runtime, world, role, table, genuine, column)
    return taken


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

    # The recovery code the attacker planted, as a second factor beside a phished password.
    # (Everyone with a second factor: the attacker, without one, signs in on a password.)
    for name in PEOPLE:
        person = getattr(world, name)
        if person.totp_secret is None:
            continue
        response = client.post(
            "/api/v1/auth/token",
            json={
                "email": person.email,
                "password": person.password,
                "totp_code": ATTACKER_RECOVERY_CODE,
            },
        )
        if response.status_code < 400 or response.status_code >= 500:
            failures.append(f"planted recovery code for {name}: HTTP {response.status_code}")

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
        for row in rows(runtime, cls.__tablename__)  # type: ignore[attr-defined]
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
        personal_key(runtime, world.victim.id).key_id,
        password_hashes,
    )


def opened_by_attacker(runtime: ServiceContext, world: World) -> list[str]:
    """Every secret a copy of the database gives the attacker's own key: a conversation key
    (it matches the conversation's commitment) or a role key (it matches a role public key),
    other than the keys of the attacker's own conversation."""
    from access_control.password_kdf import open_with_password
    from medchat.keys.personal_keys import _PERSONAL_AAD
    from medchat.keys.wrap_binding import wrap_purpose
    from medchat.models import Conversation, RoleKey

    key = personal_key(runtime, world.attacker.id)
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
    client, runtime, planted_world, as_app_role, table
):
    before = facts(runtime, planted_world)
    assert plant_rows(runtime, planted_world, as_app_role, table), (
        f"nothing could be planted in {table}"
    )
    failures = server_work(client, runtime, planted_world)
    after = facts(runtime, planted_world)

    assert failures == []
    new_wraps = after.wraps - before.wraps
    to_attacker = [w for w in new_wraps if w[2] == planted_world.attacker_key.key_id]
    assert [w for w in to_attacker if w[0] != planted_world.attacker_conversation] == []
    # Grants: the same holders as before (a rotation re-grants them), never the attacker.
    assert planted_world.attacker.id not in after.grant_holders
    assert after.grant_holders <= before.grant_holders
    # Sessions: only people who signed in themselves (each of them did, in server_work);
    # every password and the victim's key are as they were (no planted reset or enrollment
    # went through: nothing in the server's work changes a password legitimately).
    people = {getattr(planted_world, name).id for name in PEOPLE}
    assert after.session_holders <= people
    assert after.victim_key == before.victim_key
    assert after.password_hashes == before.password_hashes
    # A copy of the database and the attacker's own password open nothing but their own.
    assert opened_by_attacker(runtime, planted_world) == []


def test_the_planted_row_harness_can_fail(client, runtime, planted_world, as_app_role):
    """The same checks see a grant that really is sealed to the attacker's key."""
    holder = sign_in(runtime, planted_world.clinician).principal
    # The one way a real grant reaches a member's key: the server is made to seal it. Done
    # here by hand, as the broken code of the issue did, to show the checks notice.
    with runtime.database.transaction() as session:
        custody = runtime.custody(session)
        physician = custody.active_role_key(KeyRole.PHYSICIAN)
        held = holder.keyring.role_keys(KeyRole.PHYSICIAN)[0]
        custody.grant(physician, held.key, planted_world.attacker.id, granted_by=holder.id)
    assert opened_by_attacker(runtime, planted_world) != []
    assert planted_world.attacker.id in facts(runtime, planted_world).grant_holders
