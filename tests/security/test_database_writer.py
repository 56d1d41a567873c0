"""Someone who can write the database cannot plant a key to read later (SECURITY-MODEL key
hierarchy 9 and 10).

Each test first walks the honest path, then performs one substitution with raw SQL on the
engine (no service involved), then expects a refusal: ``KeyIntegrityFailure`` (409
``key_integrity_failed`` over HTTP) where a key fails its tag, pin or commitment, and never a
silent success. After every refusal nothing is sealed to the attacker's key: no conversation
key wrap and no role key grant names it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from access_control import crypto, hybrid_kem
from access_control.roles import Role
from medchat.archive.gate import GATED
from medchat.errors import ConfigurationError, KeyIntegrityFailure, RoleKeyRequired
from medchat.identity.principal import Principal
from medchat.keys.wrap_binding import wrap_purpose
from medchat.models import (
    AuthToken,
    Conversation,
    ConversationKeyWrap,
    ConversationStatus,
    Holder,
    KeyRole,
    Message,
    PersonalKey,
    RoleKey,
    RoleKeyGrant,
)
from medchat.services.context import ServiceContext
from medchat.services.role_keys import RoleKeyService
from tests.support.accounts import (
    Person,
    bearer,
    code_for,
    init_role_keys,
    login,
    make_member,
    make_staff,
)
from tests.support.archive import seal
from tests.support.conversations import read_bodies, reply, start_conversation
from tests.support.leaks import stored_blobs
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql, retag_everything, sealed_to

SWAP_PERSONAL_KEY = (
    "UPDATE personal_keys SET public_key = :public_key, key_id = :key_id"
    " WHERE account_id = :account_id AND retired_at IS NULL"
)
COPY_PERSONAL_KEY = (
    "UPDATE personal_keys SET public_key = :public_key, key_id = :key_id,"
    " integrity_tag = :integrity_tag WHERE account_id = :account_id AND retired_at IS NULL"
)
INSERT_ROLE_KEY = (
    "INSERT INTO role_keys (id, role, version, key_id, public_key, fingerprint, status,"
    " created_at) VALUES (:id, :role, :version, :key_id, :public_key, :fingerprint, :status,"
    " :created_at)"
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


@pytest.fixture
def world(runtime: ServiceContext) -> World:
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


def open_as(
    runtime: ServiceContext, world: World, holder: Holder, conversation_id: uuid.UUID
) -> bytes:
    """Open the DEK as the holder would: member and clinician through a read of the messages
    (row check, unwrap, commitment, then ``message_page``), the archive through its key: a
    sealed record's plain wrap as a retrieval does, a live conversation's gated wrap as
    sealing then retrieving would (the gate lifted with the server key, nothing written)."""
    if holder == Holder.ARCHIVE:
        with runtime.database.transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            keyring = world.sessions["compliance"].keyring
            keys = runtime.conversation_keys(session)
            if conversation.status == ConversationStatus.SEALED:
                return keys.open_key(conversation, keyring, holder).of(1)
            row = session.scalars(
                select(ConversationKeyWrap).where(
                    ConversationKeyWrap.conversation_id == conversation_id,
                    ConversationKeyWrap.holder == GATED,
                )
            ).one()
            plain = runtime.archive_gate.open(
                row.wrap, conversation_id=conversation_id, recipient_key_id=row.recipient_key_id
            )
            keys.verify_conversation(conversation)
            (held,) = keyring.role_keys(KeyRole.ARCHIVE)
            return keys.open_wrap(
                plain,
                held.key,
                holder=holder,
                recipient_id=held.role_key_id,
                conversation_id=conversation_id,
                commitment=conversation.key_commitment,
            )
    actor = world.sessions["member" if holder == Holder.MEMBER else "clinician"]
    assert read_bodies(runtime, actor, conversation_id)
    with runtime.database.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        keys = runtime.conversation_keys(session)
        return keys.open_key(conversation, actor.keyring, holder).of(1)


def holder_key(world: World, holder: Holder) -> hybrid_kem.PrivateKeyHandle:
    if holder == Holder.MEMBER:
        personal = world.sessions["member"].keyring.personal
        assert personal is not None
        return personal
    name, role = (
        ("clinician", KeyRole.PHYSICIAN)
        if holder == Holder.PHYSICIAN
        else ("compliance", KeyRole.ARCHIVE)
    )
    return world.sessions[name].keyring.role_keys(role)[0].key


# -- a. a member's personal public key --------------------------------------------------------


def test_a_member_key_replaced_through_sql_receives_no_new_conversation(runtime, world):
    member = world.sessions["member"]
    honest = start_conversation(runtime, member, subject=None, bodies=["first question"])
    assert sealed_to(runtime, member.keyring.personal.key_id) == [
        f"conversation {honest.id} member wrap"
    ]
    attacker = hybrid_kem.generate_kem_keypair()
    changed = execute_sql(
        runtime,
        SWAP_PERSONAL_KEY,
        public_key=attacker.public_key_bytes,
        key_id=attacker.key_id,
        account_id=world.member.id,
    )
    assert changed == 1
    with pytest.raises(KeyIntegrityFailure):
        start_conversation(runtime, member, subject=None, bodies=["second question"])
    assert conversation_count(runtime, world.member.id) == 1
    assert sealed_to(runtime, attacker.key_id) == []


def test_another_accounts_valid_key_and_tag_copied_onto_a_member_are_refused(runtime, world):
    """The attacker is member B: B's password opens B's key, and B's tag is genuine, but the
    tag names B's account, so it does not vouch for the key on A's row."""
    attacker = make_member(runtime)
    attacker_session = sign_in(runtime, attacker).principal
    own = personal_key_row(runtime, attacker.id)
    assert attacker_session.keyring.personal.key_id == own.key_id
    execute_sql(
        runtime,
        COPY_PERSONAL_KEY,
        public_key=own.public_key,
        key_id=own.key_id,
        integrity_tag=own.integrity_tag,
        account_id=world.member.id,
    )
    with pytest.raises(KeyIntegrityFailure):
        start_conversation(runtime, world.sessions["member"], subject=None, bodies=["question"])
    assert conversation_count(runtime, world.member.id) == 0
    assert sealed_to(runtime, own.key_id) == []
    # The same key and tag on their own row are accepted: the refusal was the account binding.
    own_conversation = start_conversation(runtime, attacker_session, subject=None, bodies=["hi"])
    assert sealed_to(runtime, own.key_id) == [f"conversation {own_conversation.id} member wrap"]


def test_a_retired_member_key_restored_through_sql_is_refused(runtime, world):
    """After a key change (password reset: a new keypair), the old key must stay dead."""
    with runtime.database.transaction() as session:
        runtime.custody(session).create_personal_key(world.member.id, "a-new-password-after-reset")
    execute_sql(
        runtime,
        "UPDATE personal_keys SET retired_at = CASE WHEN retired_at IS NULL THEN created_at"
        " END WHERE account_id = :account_id",
        account_id=world.member.id,
    )
    old_key_id = world.sessions["member"].keyring.personal.key_id
    with pytest.raises(KeyIntegrityFailure):
        start_conversation(runtime, world.sessions["member"], subject=None, bodies=["question"])
    assert sealed_to(runtime, old_key_id) == []


# -- b. a newcomer clinician's public key before a grant --------------------------------------


def test_a_newcomer_key_replaced_before_a_grant_receives_no_role_key(runtime, world):
    newcomer = make_staff(runtime, Role.CLINICIAN)
    original = personal_key_row(runtime, newcomer.id)
    attacker = hybrid_kem.generate_kem_keypair()
    execute_sql(
        runtime,
        SWAP_PERSONAL_KEY,
        public_key=attacker.public_key_bytes,
        key_id=attacker.key_id,
        account_id=newcomer.id,
    )
    with pytest.raises(KeyIntegrityFailure):
        grant(runtime, world.sessions["clinician"], newcomer.id)
    assert grants_of(runtime, newcomer.id) == []
    assert sealed_to(runtime, attacker.key_id) == []
    # Put the genuine key back: the same grant by the same holder goes through.
    execute_sql(
        runtime,
        SWAP_PERSONAL_KEY,
        public_key=original.public_key,
        key_id=original.key_id,
        account_id=newcomer.id,
    )
    grant(runtime, world.sessions["clinician"], newcomer.id)
    assert sign_in(runtime, newcomer).principal.keyring.holds_role(KeyRole.PHYSICIAN)


def test_a_colleagues_valid_key_and_tag_copied_onto_a_newcomer_are_refused(runtime, world):
    """The attacker is a clinician never granted the role key, whose own key and tag are
    genuine; copied onto a newcomer's row they do not receive the newcomer's grant."""
    newcomer = make_staff(runtime, Role.CLINICIAN)
    attacker = make_staff(runtime, Role.CLINICIAN)
    own = personal_key_row(runtime, attacker.id)
    execute_sql(
        runtime,
        COPY_PERSONAL_KEY,
        public_key=own.public_key,
        key_id=own.key_id,
        integrity_tag=own.integrity_tag,
        account_id=newcomer.id,
    )
    with pytest.raises(KeyIntegrityFailure):
        grant(runtime, world.sessions["clinician"], newcomer.id)
    assert grants_of(runtime, newcomer.id) == []
    assert sealed_to(runtime, own.key_id) == []
    assert not sign_in(runtime, attacker).principal.keyring.holds_role(KeyRole.PHYSICIAN)
    with runtime.database.transaction() as session:  # genuine on the attacker's own row
        runtime.custody(session).verified_personal_key(attacker.id)


# -- c. a conversation's wraps and commitment -------------------------------------------------


@pytest.mark.parametrize("holder", list(Holder))
def test_a_wrap_replaced_by_one_of_a_dek_of_the_attackers_choice_is_refused(runtime, world, holder):
    started = start_conversation(
        runtime, world.sessions["member"], subject="subject", bodies=["question"]
    )
    assert open_as(runtime, world, holder, started.id) == started.dek
    if holder == Holder.ARCHIVE:
        # The archive key opens sealed records only: the attacker replaces a sealed one's wrap.
        seal(runtime, world.sessions["member"], started.id)
        assert open_as(runtime, world, holder, started.id) == started.dek
    if holder == Holder.MEMBER:
        public_key = personal_key_row(runtime, world.member.id).public_key
        recipient_id = world.member.id
    else:
        role_key = active_role_key(runtime, KeyRole(str(holder)))
        public_key, recipient_id = role_key.public_key, role_key.id
    chosen = crypto.generate_key()
    context = {
        "recipient_id": recipient_id,
        "context_id": started.id,
        "purpose": wrap_purpose(holder),
    }
    forged = hybrid_kem.wrap_key(public_key, chosen, **context)
    # HPKE needs only the public key: the forged wrap opens, to the attacker's DEK.
    assert hybrid_kem.unwrap_key(holder_key(world, holder), forged, **context) == chosen
    execute_sql(
        runtime,
        "UPDATE conversation_key_wraps SET wrap = :wrap"
        " WHERE conversation_id = :conversation_id AND holder = :holder",
        wrap=forged,
        conversation_id=started.id,
        holder=str(holder),
    )
    with pytest.raises(KeyIntegrityFailure, match="commitment"):
        open_as(runtime, world, holder, started.id)
    # The attacker also writes the commitment to their DEK: now the key set's tag fails.
    execute_sql(
        runtime,
        "UPDATE conversations SET key_commitment = :commitment WHERE id = :id",
        commitment=crypto.key_commitment(chosen, started.id),
        id=started.id,
    )
    with pytest.raises(KeyIntegrityFailure, match="altered"):
        open_as(runtime, world, holder, started.id)
    if holder != Holder.ARCHIVE:
        author = world.sessions["member" if holder == Holder.MEMBER else "clinician"]
        with pytest.raises(KeyIntegrityFailure):
            reply(runtime, author, started.id, "nothing may be sealed under the chosen key")
    # Nothing anywhere was sealed under the attacker's DEK, and no message was added.
    chosen_id = crypto.key_id(chosen)
    for table, column, _row, blob in stored_blobs(runtime.database.engine):
        if len(blob) > 9 and blob[0] == crypto.AEAD_VERSION:
            assert blob[1:9] != chosen_id, f"{table}.{column} sealed under the planted DEK"
    with runtime.database.transaction() as session:
        assert session.get(Conversation, started.id).message_count == 1


def test_another_conversations_key_set_transplanted_through_sql_is_refused(runtime, world):
    """Member B knows the DEK of B's own conversation; B copies its wraps, commitment and
    tag (all genuine) onto A's conversation. The tag and the wraps name their conversation."""
    attacker = make_member(runtime)
    own = start_conversation(
        runtime, sign_in(runtime, attacker).principal, subject=None, bodies=["mine"]
    )
    victim = start_conversation(runtime, world.sessions["member"], subject=None, bodies=["hers"])
    with runtime.database.transaction() as session:
        source = session.get(Conversation, own.id)
        genuine = session.get(Conversation, victim.id)
        wraps = {
            row.holder: row.wrap
            for row in session.scalars(
                select(ConversationKeyWrap).where(ConversationKeyWrap.conversation_id == own.id)
            )
        }
    for holder in (Holder.PHYSICIAN, GATED):  # both are live: the archive wrap is gated
        execute_sql(
            runtime,
            "UPDATE conversation_key_wraps SET wrap = :wrap"
            " WHERE conversation_id = :conversation_id AND holder = :holder",
            wrap=wraps[holder],
            conversation_id=victim.id,
            holder=str(holder),
        )
    execute_sql(
        runtime,
        "UPDATE conversations SET key_commitment = :commitment, key_tag = :tag WHERE id = :id",
        commitment=source.key_commitment,
        tag=source.key_tag,
        id=victim.id,
    )
    for holder in (Holder.PHYSICIAN, Holder.ARCHIVE):
        with pytest.raises(KeyIntegrityFailure):
            open_as(runtime, world, holder, victim.id)
    # With the victim's own commitment and tag back, the moved wraps still do not open
    # (HPKE's info names the conversation), while the untouched member wrap does.
    execute_sql(
        runtime,
        "UPDATE conversations SET key_commitment = :commitment, key_tag = :tag WHERE id = :id",
        commitment=genuine.key_commitment,
        tag=genuine.key_tag,
        id=victim.id,
    )
    with pytest.raises(KeyIntegrityFailure, match="commitment"):
        open_as(runtime, world, Holder.PHYSICIAN, victim.id)
    # (The gate's associated data names the conversation too.)
    with pytest.raises(KeyIntegrityFailure, match="archive wrap was altered"):
        open_as(runtime, world, Holder.ARCHIVE, victim.id)
    assert open_as(runtime, world, Holder.MEMBER, victim.id) == victim.dek


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


def _plant_grant(runtime, role_key_id, account_id, wrap) -> None:
    execute_sql(
        runtime,
        INSERT_GRANT,
        id=uuid.uuid4(),
        role_key_id=role_key_id,
        account_id=account_id,
        wrap=wrap,
        created_at=runtime.clock.now(),
    )


def _session_count(runtime, account_id) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(
            select(func.count()).select_from(AuthToken).where(AuthToken.account_id == account_id)
        )


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
    _plant_grant(runtime, physician.id, attacker.id, wrap)
    sessions_before = _session_count(runtime, attacker.id)
    with pytest.raises(KeyIntegrityFailure, match="stored record"):
        sign_in(runtime, attacker)
    retag_everything(runtime)  # behind the row tag, the opened key must be the pinned one
    with pytest.raises(KeyIntegrityFailure, match="does not match"):
        sign_in(runtime, attacker)
    assert _session_count(runtime, attacker.id) == sessions_before


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
    _plant_grant(runtime, planted, attacker.id, wrap)
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
    _plant_grant(runtime, physician.id, attacker.id, genuine)
    with pytest.raises(KeyIntegrityFailure, match="stored record"):
        sign_in(runtime, attacker)
    retag_everything(runtime)  # behind the row tag, the wrap names its holder
    assert not sign_in(runtime, attacker).principal.keyring.holds_role(KeyRole.PHYSICIAN)


# -- over HTTP --------------------------------------------------------------------------------


def assert_key_integrity_failed(response) -> None:
    """409 with the contract's JSON error and nothing more (no trace, no detail)."""
    assert response.status_code == 409
    assert response.is_json
    assert response.get_json() == {
        "error": {
            "code": "key_integrity_failed",
            "message": response.get_json()["error"]["message"],
        }
    }
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text


def test_refusals_over_http_are_key_integrity_failed_json(client, runtime, world):
    holder = bearer(login(client, runtime, world.clinician))
    newcomer = make_staff(runtime, Role.CLINICIAN)
    attacker = hybrid_kem.generate_kem_keypair()
    execute_sql(
        runtime,
        SWAP_PERSONAL_KEY,
        public_key=attacker.public_key_bytes,
        key_id=attacker.key_id,
        account_id=newcomer.id,
    )
    response = client.post(f"/api/v1/clinician/colleagues/{newcomer.id}/grant", headers=holder)
    assert_key_integrity_failed(response)
    assert grants_of(runtime, newcomer.id) == []

    intruder = make_staff(runtime, Role.CLINICIAN)
    physician = active_role_key(runtime, KeyRole.PHYSICIAN)
    own = personal_key_row(runtime, intruder.id)
    fake_role_key = hybrid_kem.generate_kem_keypair()
    wrap = hybrid_kem.wrap_key(
        own.public_key,
        fake_role_key.private_bytes_for_storage(),
        recipient_id=intruder.id,
        context_id=physician.id,
        purpose=hybrid_kem.PURPOSE_ROLE_KEY,
    )
    _plant_grant(runtime, physician.id, intruder.id, wrap)
    retag_everything(runtime)  # behind the row tag (see test_planted_rows), the pins refuse
    runtime.clock.advance(seconds=30)
    response = client.post(
        "/api/v1/auth/token",
        json={
            "email": intruder.email,
            "password": intruder.password,
            "totp_code": code_for(intruder, runtime),
        },
    )
    assert_key_integrity_failed(response)
    assert _session_count(runtime, intruder.id) == 0


def _has_route(app, rule: str) -> bool:
    return any(r.rule == rule for r in app.url_map.iter_rules())


def test_conversation_refusals_over_http_are_key_integrity_failed_json(app, client, runtime, world):
    if not _has_route(app, "/api/v1/conversations/<uuid:conversation_id>/messages"):
        pytest.skip("the conversation API is not part of this build")
    member = bearer(login(client, runtime, world.member))
    assert (
        client.put(
            "/api/v1/me/consent",
            json={"health_messaging": True, "version": "2026-01"},
            headers=member,
        ).status_code
        == 200
    )
    created = client.post(
        "/api/v1/conversations",
        json={"body": "question", "emergency_notice": "2026-12"},
        headers=member,
    )
    assert created.status_code == 201, created.get_json()
    conversation_id = created.get_json()["id"]
    messages = f"/api/v1/conversations/{conversation_id}/messages"
    assert client.get(messages, headers=member).status_code == 200
    forged = hybrid_kem.wrap_key(
        personal_key_row(runtime, world.member.id).public_key,
        crypto.generate_key(),
        recipient_id=world.member.id,
        context_id=uuid.UUID(conversation_id),
        purpose=wrap_purpose(Holder.MEMBER),
    )
    execute_sql(
        runtime,
        "UPDATE conversation_key_wraps SET wrap = :wrap"
        " WHERE conversation_id = :conversation_id AND holder = 'member'",
        wrap=forged,
        conversation_id=uuid.UUID(conversation_id),
    )
    assert_key_integrity_failed(client.get(messages, headers=member))
    assert_key_integrity_failed(client.post(messages, json={"body": "more"}, headers=member))
    with runtime.database.transaction() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.conversation_id == uuid.UUID(conversation_id))
            )
            == 1
        )

    attacker = hybrid_kem.generate_kem_keypair()
    execute_sql(
        runtime,
        SWAP_PERSONAL_KEY,
        public_key=attacker.public_key_bytes,
        key_id=attacker.key_id,
        account_id=world.member.id,
    )
    assert_key_integrity_failed(
        client.post(
            "/api/v1/conversations",
            json={"body": "again", "emergency_notice": "2026-12"},
            headers=member,
        )
    )
    assert conversation_count(runtime, world.member.id) == 1
    assert sealed_to(runtime, attacker.key_id) == []
