"""Someone who can write the database cannot plant a role key to read later (SECURITY-MODEL
key hierarchy 9 and 10): a role public key replaced, a role_keys row planted or its status
flipped, a grant planted or copied.

Each test first walks the honest path, then performs one substitution with raw SQL on the
engine (no service involved), then expects a refusal: ``KeyIntegrityFailure`` where a key fails
its tag or its pin, and never a silent success. Most substitutions are tried twice: as written,
the row's integrity tag refuses them ("stored record"); with every tag recomputed
(``retag_everything``), the pins and fingerprints behind it refuse them as well. After every
refusal nothing is sealed to the attacker's key: no conversation key wrap and no role key grant
names it, and no session is issued on a planted grant.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from access_control import hybrid_kem
from access_control.roles import Role
from medchat.errors import ConfigurationError, KeyIntegrityFailure, RoleKeyRequired
from medchat.models import KeyRole, RoleKeyGrant
from medchat.services.context import ServiceContext
from tests.support.accounts import make_staff
from tests.support.conversations import start_conversation
from tests.support.planted_keys import (
    World,
    active_role_key,
    conversation_count,
    grant,
    grants_of,
    key_holders,
    personal_key_row,
    plant_grant,
    session_count,
)
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql, retag_everything, sealed_to

INSERT_ROLE_KEY = (
    "INSERT INTO role_keys (id, role, version, key_id, public_key, fingerprint, status,"
    " created_at) VALUES (:id, :role, :version, :key_id, :public_key, :fingerprint, :status,"
    " :created_at)"
)


@pytest.fixture
def world(runtime: ServiceContext) -> World:
    return key_holders(runtime)


# -- d. a role public key ---------------------------------------------------------------------


def _swap_role_key(runtime, role, attacker, *, with_fingerprint: bool) -> None:
    statement = "UPDATE role_keys SET public_key = :public_key, key_id = :key_id"
    params = {"public_key": attacker.public_key_bytes, "key_id": attacker.key_id}
    if with_fingerprint:
        statement += ", fingerprint = :fingerprint"
        params["fingerprint"] = hybrid_kem.public_key_fingerprint(attacker.public_key_bytes)
    statement += " WHERE role = :role AND status = 'active'"
    assert execute_sql(runtime, statement, role=str(role), **params) == 1


FINGERPRINT = pytest.mark.parametrize(
    "with_fingerprint", [False, True], ids=["key only", "key and fingerprint"]
)


@FINGERPRINT
@pytest.mark.parametrize("role", list(KeyRole))
def test_a_role_key_replaced_through_sql_receives_no_new_conversation(
    runtime, world, role, with_fingerprint
):
    member = world.sessions["member"]
    start_conversation(runtime, member, subject=None, bodies=["first question"])
    attacker = hybrid_kem.generate_kem_keypair()
    _swap_role_key(runtime, role, attacker, with_fingerprint=with_fingerprint)
    with pytest.raises(KeyIntegrityFailure, match="stored record"):
        start_conversation(runtime, member, subject=None, bodies=["second question"])
    retag_everything(runtime)  # behind the row tag, the pins refuse as well
    with pytest.raises(KeyIntegrityFailure, match=r"fingerprint|pinned"):
        start_conversation(runtime, member, subject=None, bodies=["second question"])
    assert conversation_count(runtime, world.member.id) == 1
    assert sealed_to(runtime, attacker.key_id) == []


@FINGERPRINT
def test_a_role_key_replaced_through_sql_is_never_granted(runtime, world, with_fingerprint):
    newcomer = make_staff(runtime, Role.CLINICIAN)
    physician = active_role_key(runtime, KeyRole.PHYSICIAN)
    attacker = hybrid_kem.generate_kem_keypair()
    _swap_role_key(runtime, KeyRole.PHYSICIAN, attacker, with_fingerprint=with_fingerprint)
    with pytest.raises(KeyIntegrityFailure):
        grant(runtime, world.sessions["clinician"], newcomer.id)
    assert grants_of(runtime, newcomer.id) == []
    # A holder signing in now is refused too, rather than handed a key that is not pinned.
    with pytest.raises(KeyIntegrityFailure):
        sign_in(runtime, world.clinician)
    # With the genuine row back, the same grant goes through.
    execute_sql(
        runtime,
        "UPDATE role_keys SET public_key = :public_key, key_id = :key_id,"
        " fingerprint = :fingerprint WHERE id = :id",
        public_key=physician.public_key,
        key_id=physician.key_id,
        fingerprint=physician.fingerprint,
        id=physician.id,
    )
    grant(runtime, world.sessions["clinician"], newcomer.id)
    assert grants_of(runtime, newcomer.id) == [physician.id]
    assert sealed_to(runtime, attacker.key_id) == []


def test_the_service_refuses_to_start_when_a_role_key_disagrees_with_its_pin(
    make_app, runtime, world
):
    make_app()  # the genuine keys start
    attacker = hybrid_kem.generate_kem_keypair()
    _swap_role_key(runtime, KeyRole.PHYSICIAN, attacker, with_fingerprint=True)
    retag_everything(runtime)  # behind the row tag, the pins refuse as well
    try:
        make_app()
    except ConfigurationError:
        return
    raise AssertionError("the service started with a role key its pins do not name")


# -- e. planted role_keys rows and flipped statuses -------------------------------------------


def _plant_role_key(runtime, attacker, *, status: str, role: str = "physician") -> uuid.UUID:
    row_id = uuid.uuid4()
    execute_sql(
        runtime,
        INSERT_ROLE_KEY,
        id=row_id,
        role=role,
        version=2,
        key_id=attacker.key_id,
        public_key=attacker.public_key_bytes,
        fingerprint=hybrid_kem.public_key_fingerprint(attacker.public_key_bytes),
        status=status,
        created_at=runtime.clock.now(),
    )
    return row_id


def test_an_extra_active_role_key_planted_through_sql_is_refused(runtime, world):
    member = world.sessions["member"]
    start_conversation(runtime, member, subject=None, bodies=["first question"])
    attacker = hybrid_kem.generate_kem_keypair()
    _plant_role_key(runtime, attacker, status="active")
    with pytest.raises(KeyIntegrityFailure, match="stored record"):
        start_conversation(runtime, member, subject=None, bodies=["second question"])
    retag_everything(runtime)  # behind the row tag, the pins refuse as well
    with pytest.raises(KeyIntegrityFailure, match="More than one"):
        start_conversation(runtime, member, subject=None, bodies=["second question"])
    assert conversation_count(runtime, world.member.id) == 1
    assert sealed_to(runtime, attacker.key_id) == []


@pytest.mark.parametrize("genuine_status", ["pending", "retired"])
def test_a_planted_role_key_made_the_only_active_one_is_refused(runtime, world, genuine_status):
    member = world.sessions["member"]
    start_conversation(runtime, member, subject=None, bodies=["first question"])
    physician = active_role_key(runtime, KeyRole.PHYSICIAN)
    attacker = hybrid_kem.generate_kem_keypair()
    planted = _plant_role_key(runtime, attacker, status="active")
    execute_sql(
        runtime,
        "UPDATE role_keys SET status = :status WHERE id = :id",
        status=genuine_status,
        id=physician.id,
    )
    retag_everything(runtime)  # behind the row tag, the pins refuse as well
    with pytest.raises(KeyIntegrityFailure, match="not pinned"):
        start_conversation(runtime, member, subject=None, bodies=["second question"])
    assert conversation_count(runtime, world.member.id) == 1
    # A grant hands on only the genuine key the holder's session opened, or nothing.
    newcomer = make_staff(runtime, Role.CLINICIAN)
    if genuine_status == "retired":
        with pytest.raises(RoleKeyRequired):
            grant(runtime, world.sessions["clinician"], newcomer.id)
        assert grants_of(runtime, newcomer.id) == []
    else:
        grant(runtime, world.sessions["clinician"], newcomer.id)
        assert grants_of(runtime, newcomer.id) == [physician.id]
    assert planted not in grants_of(runtime, newcomer.id)
    assert sealed_to(runtime, attacker.key_id) == []


# -- f. planted grants ------------------------------------------------------------------------


def test_a_planted_grant_of_the_attackers_own_role_key_is_refused_at_sign_in(runtime, world):
    """The attacker controls a clinician account (password and TOTP) and seals a role key of
    their own to it under the genuine role key's id: the opened key is not the pinned one."""
    attacker = make_staff(runtime, Role.CLINICIAN)
    assert not sign_in(runtime, attacker).principal.keyring.holds_role(KeyRole.PHYSICIAN)
    physician = active_role_key(runtime, KeyRole.PHYSICIAN)
    own = personal_key_row(runtime, attacker.id)
    fake_role_key = hybrid_kem.generate_kem_keypair()
    wrap = hybrid_kem.wrap_key(
        own.public_key,
        fake_role_key.private_bytes_for_storage(),
        recipient_id=attacker.id,
        context_id=physician.id,
        purpose=hybrid_kem.PURPOSE_ROLE_KEY,
    )
    plant_grant(runtime, physician.id, attacker.id, wrap)
    sessions_before = session_count(runtime, attacker.id)
    with pytest.raises(KeyIntegrityFailure, match="stored record"):
        sign_in(runtime, attacker)
    retag_everything(runtime)  # behind the row tag, the opened key must be the pinned one
    with pytest.raises(KeyIntegrityFailure, match="does not match"):
        sign_in(runtime, attacker)
    assert session_count(runtime, attacker.id) == sessions_before


def test_a_planted_grant_of_an_unpinned_role_key_is_refused_at_sign_in(runtime, world):
    attacker = make_staff(runtime, Role.CLINICIAN)
    fake_role_key = hybrid_kem.generate_kem_keypair()
    planted = _plant_role_key(runtime, fake_role_key, status="pending")
    own = personal_key_row(runtime, attacker.id)
    wrap = hybrid_kem.wrap_key(
        own.public_key,
        fake_role_key.private_bytes_for_storage(),
        recipient_id=attacker.id,
        context_id=planted,
        purpose=hybrid_kem.PURPOSE_ROLE_KEY,
    )
    plant_grant(runtime, planted, attacker.id, wrap)
    with pytest.raises(KeyIntegrityFailure, match="stored record"):
        sign_in(runtime, attacker)
    retag_everything(runtime)  # behind the row tag, the pins refuse as well
    with pytest.raises(KeyIntegrityFailure, match="not pinned"):
        sign_in(runtime, attacker)


def test_a_holders_grant_copied_to_another_account_opens_nothing(runtime, world):
    """The wrap is sealed to the holder's key and names the holder: on the attacker's row it
    does not open, and is skipped like a grant sealed to a key the account no longer has."""
    attacker = make_staff(runtime, Role.CLINICIAN)
    physician = active_role_key(runtime, KeyRole.PHYSICIAN)
    with runtime.database.transaction() as session:
        genuine = session.scalar(
            select(RoleKeyGrant.wrap).where(RoleKeyGrant.account_id == world.clinician.id)
        )
    plant_grant(runtime, physician.id, attacker.id, genuine)
    with pytest.raises(KeyIntegrityFailure, match="stored record"):
        sign_in(runtime, attacker)
    retag_everything(runtime)  # behind the row tag, the wrap names its holder
    assert not sign_in(runtime, attacker).principal.keyring.holds_role(KeyRole.PHYSICIAN)
