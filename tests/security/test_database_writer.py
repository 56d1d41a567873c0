"""Someone who can write the database cannot plant a key to read later (SECURITY-MODEL key
hierarchy 9 and 10): here, a member's or a newcomer's personal public key, and a
conversation's wraps and commitment.

Each test first walks the honest path, then performs one substitution with raw SQL on the
engine (no service involved), then expects a refusal: ``KeyIntegrityFailure`` where a key
fails its tag, its account binding or the commitment, and never a silent success. After every
refusal nothing is sealed to the attacker's key: no conversation key wrap and no role key grant
names it, and nothing is sealed under a DEK of the attacker's choice. Role keys, their rows
and their grants are in ``test_database_writer_role_keys.py``; the same refusals over HTTP
(409 ``key_integrity_failed``) in ``test_database_writer_http.py``.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from access_control import crypto, hybrid_kem
from access_control.roles import Role
from medchat.archive.gate import GATED
from medchat.errors import KeyIntegrityFailure
from medchat.keys.wrap_binding import wrap_purpose
from medchat.models import Conversation, ConversationKeyWrap, ConversationStatus, Holder, KeyRole
from medchat.services.context import ServiceContext
from tests.support.accounts import make_member, make_staff
from tests.support.archive import seal
from tests.support.conversations import read_bodies, reply, start_conversation
from tests.support.leaks import stored_blobs
from tests.support.planted_keys import (
    SWAP_PERSONAL_KEY,
    World,
    active_role_key,
    conversation_count,
    grant,
    grants_of,
    key_holders,
    personal_key_row,
)
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql, sealed_to

COPY_PERSONAL_KEY = (
    "UPDATE personal_keys SET public_key = :public_key, key_id = :key_id,"
    " integrity_tag = :integrity_tag WHERE account_id = :account_id AND retired_at IS NULL"
)


@pytest.fixture
def world(runtime: ServiceContext) -> World:
    return key_holders(runtime)


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
