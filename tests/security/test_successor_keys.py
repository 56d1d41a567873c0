"""A holder who loses the role key reads nothing written afterwards, even before the rotation.

Issue 18's last gap: after a revocation (or a disable, or a staff reset) the next seal in each
conversation began a new key epoch, but its DEK was still wrapped to the same physician key
until someone ran ``medchat keys rotate``. The leaver, with the role key kept or rebuilt from a
database copy taken before the loss and their password, read everything written in between.
Now the loss makes a successor role key (``medchat.keys.successors``) and new epochs are
wrapped to it. The attacker works offline on copies (``tests/support/key_copies.py``), with
everything they could have kept; each test first checks that the attack reads the history.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from access_control import hybrid_kem
from access_control.roles import Role
from medchat.keys.status import key_status
from medchat.models import ConversationKeyWrap, Holder, KeyRole, RoleKey, RoleKeyGrant
from medchat.services.context import verify_role_key_pins
from medchat.services.role_keys import RoleKeyService
from tests.support.accounts import Person, bearer, login, make_member, make_staff
from tests.support.archive import archive_colleague, retrieve, seal
from tests.support.cli import cli_runner
from tests.support.conversations import read_bodies, reply
from tests.support.key_copies import Copy, deks_from, readable, role_keys_from, take_copy
from tests.support.messaging import CONVERSATIONS, ask, asked, care_team, claim, give_consent, send
from tests.support.officer_copy import archive_keys_from_copy, conversations_opened_from_copy
from tests.support.rotation import (
    audit_details,
    grant,
    physician_keys,
    revoke,
    rotate,
    rotation_world,
    statuses,
    wraps_sealed_to,
)
from tests.support.sessions import STAFF_ADDRESS, sign_in
from tests.support.tampering import execute_sql

CLINICIAN = "/api/v1/clinician"


def _history(client: Any, auth: dict[str, str], conversation_id: str, *, staff: bool) -> set[str]:
    base = f"{CLINICIAN}/conversations" if staff else CONVERSATIONS
    response = client.get(f"{base}/{conversation_id}/messages?order=asc&limit=100", headers=auth)
    assert response.status_code == 200, response.get_json()
    return {item["body"] for item in response.get_json()["items"]}


def _remove(event: str, client: Any, runtime: Any, by: Person, leaver: Person) -> None:
    """Take the physician key from ``leaver`` the way ``event`` says."""
    if event == "revoke":
        answer = client.delete(
            f"{CLINICIAN}/colleagues/{leaver.id}/grant",
            json={"password": by.password},
            headers=bearer(login(client, runtime, by)),
        )
    else:
        admin = bearer(login(client, runtime, make_staff(runtime, Role.ADMIN)))
        answer = client.post(f"/api/v1/admin/accounts/{leaver.id}/{event}", headers=admin)
    assert answer.status_code in (201, 204), answer.get_json()


def _attack(copies: list[Copy], kept: list[Any], latest: Copy) -> set[str]:
    """Everything the role keys ``kept`` open, tried on every wrap of every copy."""
    return readable(latest, deks_from(copies, Holder.PHYSICIAN, kept))


def _physician_grantees(runtime: Any, version: int) -> set[uuid.UUID]:
    key = physician_keys(runtime)[version]
    with runtime.database.transaction() as session:
        return set(
            session.scalars(
                select(RoleKeyGrant.account_id).where(RoleKeyGrant.role_key_id == key.id)
            )
        )


@pytest.mark.parametrize("event", ["revoke", "disable", "reset"])
def test_a_holder_who_lost_the_key_reads_nothing_written_after_the_loss(client, runtime, event):
    team = care_team(runtime)
    alice = team.clinician
    bob = make_staff(runtime, Role.CLINICIAN, first_name="Bob", last_name="Leaver")
    carol = make_staff(runtime, Role.CLINICIAN, first_name="Carol", last_name="Stays")
    grant(runtime, alice, bob)
    grant(runtime, alice, carol)
    member = login(client, runtime, make_member(runtime))
    give_consent(client, member)
    doctor = login(client, runtime, alice)  # a session opened before the loss, kept open
    conversation_id = asked(client, member, "BEFORE question")
    mine = f"{CONVERSATIONS}/{conversation_id}/messages"
    theirs = f"{CLINICIAN}/conversations/{conversation_id}/messages"
    claim(client, doctor, conversation_id)  # answering needs the claim (issue 17, item 3)
    assert send(client, doctor, theirs, "BEFORE doctor").status_code == 201
    before = {"BEFORE question", "BEFORE doctor"}
    early = take_copy(runtime)  # taken while Bob held the key
    bob_keys = role_keys_from(early, bob.id, bob.password, KeyRole.PHYSICIAN)
    assert bob_keys and _attack([early], bob_keys, early) >= before

    _remove(event, client, runtime, alice, bob)
    assert statuses(runtime) == {1: "active", 2: "successor"}
    assert _physician_grantees(runtime, 2) == {alice.id, carol.id}
    verify_role_key_pins(runtime)  # a host restarted now starts: the successor is unpinned
    assert send(client, member, mine, "AFTER member").status_code == 201
    assert send(client, doctor, theirs, "AFTER doctor").status_code == 201
    new_question = asked(client, member, "AFTER new question")
    after = {"AFTER member", "AFTER doctor", "AFTER new question"}
    late = take_copy(runtime)

    # Bob's role key, kept or rebuilt from the early copy and his password, tried on every
    # wrap of both copies: the history, nothing written since the loss, before any rotation.
    opened = _attack([early, late], bob_keys, late)
    assert before <= opened
    assert not opened & after
    assert role_keys_from(late, bob.id, bob.password, KeyRole.PHYSICIAN) == []
    successor = physician_keys(runtime)[2]
    assert wraps_sealed_to(runtime, successor) == 2  # the new epoch and the new question

    # The remaining holders read everything: Alice in the session opened before the loss,
    # Carol signed in afterwards, Dave granted the key after the loss (by Alice's old
    # session), and the member.
    dave = make_staff(runtime, Role.CLINICIAN, first_name="Dave", last_name="Later")
    granted = client.post(
        f"{CLINICIAN}/colleagues/{dave.id}/grant", json={}, headers=bearer(doctor)
    )
    assert granted.status_code == 200, granted.get_json()
    assert granted.get_json()["role_key_versions"] == [1, 2]
    everything = before | after - {"AFTER new question"}
    for person_tokens in (doctor, login(client, runtime, carol), login(client, runtime, dave)):
        auth = bearer(person_tokens)
        assert _history(client, auth, conversation_id, staff=True) == everything
        assert _history(client, auth, new_question, staff=True) == {"AFTER new question"}
    assert _history(client, bearer(member), conversation_id, staff=False) == everything
    assert (audit_details(runtime, "role_key.successor")[0]["succeeds_versions"]) == [1]


def test_a_second_loss_makes_another_successor_and_the_rotation_retires_them_all(make_app):
    app = make_app()
    runtime, client = app.extensions["medchat"], app.test_client()
    team = care_team(runtime)
    alice = team.clinician
    bob = make_staff(runtime, Role.CLINICIAN, first_name="Bob", last_name="First")
    carol = make_staff(runtime, Role.CLINICIAN, first_name="Carol", last_name="Second")
    grant(runtime, alice, bob)
    grant(runtime, alice, carol)
    member = login(client, runtime, make_member(runtime))
    give_consent(client, member)
    conversation_id = asked(client, member, "BEFORE question")
    mine = f"{CONVERSATIONS}/{conversation_id}/messages"
    early = take_copy(runtime)
    bob_keys = role_keys_from(early, bob.id, bob.password, KeyRole.PHYSICIAN)

    revoke(runtime, alice, bob)
    assert send(client, member, mine, "FIRST window").status_code == 201
    middle = take_copy(runtime)  # Carol still holds v1 and the first successor here
    carol_keys = role_keys_from(middle, carol.id, carol.password, KeyRole.PHYSICIAN)
    assert len(carol_keys) == 2
    revoke(runtime, alice, carol)
    assert statuses(runtime) == {1: "active", 2: "successor", 3: "successor"}
    assert _physician_grantees(runtime, 3) == {alice.id}
    assert send(client, member, mine, "SECOND window").status_code == 201
    late = take_copy(runtime)

    copies = [early, middle, late]
    assert _attack(copies, bob_keys, late) & {"FIRST window", "SECOND window"} == set()
    carol_read = _attack(copies, carol_keys, late)
    assert "FIRST window" in carol_read  # she held the key then
    assert "SECOND window" not in carol_read

    result = rotate(runtime, alice)
    assert (result.from_version, result.to_version, result.retired) == (1, 4, True)
    assert statuses(runtime) == {1: "retired", 2: "retired", 3: "retired", 4: "active"}
    keys = physician_keys(runtime)
    assert [wraps_sealed_to(runtime, keys[v]) for v in (1, 2, 3)] == [0, 0, 0]
    with runtime.database.transaction() as session:
        physician_wraps = session.scalars(
            select(ConversationKeyWrap.recipient_key_id).where(
                ConversationKeyWrap.holder == Holder.PHYSICIAN
            )
        ).all()
    assert set(physician_wraps) == {keys[4].key_id} and len(physician_wraps) == 3
    assert _physician_grantees(runtime, 2) == _physician_grantees(runtime, 3) == set()
    assert audit_details(runtime, "role_key.retire")[-1]["successors_retired"] == [2, 3]
    with runtime.database.transaction() as session:
        status = key_status(session, runtime.custody(session))
    doctors = [v for v in status.versions if v.role == KeyRole.PHYSICIAN]
    assert [(v.version, v.status, v.wraps, v.holders, v.pinned) for v in doctors] == [
        (1, "retired", 0, 0, False),
        (2, "retired", 0, 0, False),
        (3, "retired", 0, 0, False),
        (4, "active", 3, 1, True),
    ]
    assert status.due() == []
    shown = cli_runner(app).invoke(args=["keys", "status"]).stdout
    assert "successor" not in shown and "ROTATION DUE" not in shown

    doctor = login(client, runtime, alice)
    assert send(client, member, mine, "AFTER rotation").status_code == 201
    final = take_copy(runtime)
    for kept in (bob_keys, carol_keys):
        assert "AFTER rotation" not in _attack([*copies, final], kept, final)
    assert _history(client, bearer(doctor), conversation_id, staff=True) == {
        "BEFORE question",
        "FIRST window",
        "SECOND window",
        "AFTER rotation",
    }


def test_a_planted_successor_is_refused_and_never_sealed_to(client, runtime):
    team = care_team(runtime)
    member = login(client, runtime, make_member(runtime))
    give_consent(client, member)
    conversation_id = asked(client, member, "BEFORE question")
    theirs = hybrid_kem.generate_kem_keypair()  # the planter's own key pair
    planted = uuid.uuid4()
    execute_sql(
        runtime,
        "INSERT INTO role_keys (id, role, version, key_id, public_key, fingerprint, status,"
        " created_at, row_tag) VALUES (:id, 'physician', 7, :key_id, :public_key,"
        " :fingerprint, 'successor', :at, :tag)",
        id=planted,
        key_id=theirs.key_id,
        public_key=theirs.public_key_bytes,
        fingerprint=hybrid_kem.public_key_fingerprint(theirs.public_key_bytes),
        at=runtime.clock.now(),
        tag=b"\x00" * 32,
    )
    mine = f"{CONVERSATIONS}/{conversation_id}/messages"
    refused = send(client, member, mine, "AFTER planting")
    assert refused.status_code == 409, refused.get_json()
    assert refused.get_json()["error"]["code"] == "row_integrity_failed"
    question = ask(client, member, "A new question")
    assert (
        question.status_code == 409
        and question.get_json()["error"]["code"] == "row_integrity_failed"
    )
    assert audit_details(runtime, "integrity.row_refused")
    assert team.clinician is not None
    with runtime.database.transaction() as session:
        epochs = session.scalars(
            select(ConversationKeyWrap.epoch).where(
                ConversationKeyWrap.conversation_id == uuid.UUID(conversation_id)
            )
        ).all()
    assert set(epochs) == {1}  # no epoch began, so nothing was sealed to the planted key
    with runtime.database.transaction() as session:
        sealed = session.scalars(
            select(ConversationKeyWrap.id).where(
                ConversationKeyWrap.recipient_key_id == theirs.key_id
            )
        ).all()
    assert sealed == []


def test_a_compliance_officer_who_lost_the_archive_key_opens_no_record_sealed_after(
    client, runtime
):
    """The archive role: a compliance revocation makes an archive successor, and a record
    sealed afterwards opens with it only (the remaining officers retrieve it)."""
    team = care_team(runtime)
    cora = archive_colleague(runtime, team.compliance)
    leo = archive_colleague(runtime, team.compliance)
    person = make_member(runtime)
    member = login(client, runtime, person)
    give_consent(client, member)
    before = uuid.UUID(asked(client, member, "BEFORE sealed"))
    seal(runtime, sign_in(runtime, person).principal, before)
    leo_keys = archive_keys_from_copy(runtime, leo)  # his password and a copy taken now
    assert before in conversations_opened_from_copy(runtime, leo_keys)

    actor = sign_in(runtime, team.compliance).principal
    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).revoke(
            actor,
            KeyRole.ARCHIVE,
            leo.id,
            password=team.compliance.password,
            address=STAFF_ADDRESS,
        )
    with runtime.database.transaction() as session:
        archive = {
            row.version: row.status
            for row in session.scalars(select(RoleKey).where(RoleKey.role == KeyRole.ARCHIVE))
        }
    assert archive == {1: "active", 2: "successor"}
    after = uuid.UUID(asked(client, member, "AFTER sealed"))
    seal(runtime, sign_in(runtime, person).principal, after)

    opened = conversations_opened_from_copy(runtime, leo_keys)
    assert before in opened and after not in opened
    record = retrieve(runtime, cora, team.compliance, after)
    assert [m.body for m in record.messages] == ["AFTER sealed"]
    assert [m.body for m in retrieve(runtime, team.compliance, cora, before).messages] == [
        "BEFORE sealed"
    ]


def test_an_interrupted_rotation_resumes_through_the_successors_wraps(runtime):
    """Stopped after every batch, the rotation still moves the old key's wraps and then the
    successor's (each key's own cursor pass), and retires both."""
    world = rotation_world(runtime)
    leaver = make_staff(runtime, Role.CLINICIAN)
    grant(runtime, world.clinician, leaver)
    revoke(runtime, world.clinician, leaver)
    doctor = sign_in(runtime, world.colleague).principal
    for conversation_id in world.deks:
        reply(runtime, doctor, conversation_id, "after the loss")
    keys = physician_keys(runtime)
    assert (wraps_sealed_to(runtime, keys[1]), wraps_sealed_to(runtime, keys[2])) == (6, 6)

    runs = []
    while not (runs and runs[-1].retired) and len(runs) < 40:
        runs.append(rotate(runtime, world.clinician, batch_size=2, max_batches=1))

    assert runs[-1].retired and runs[-1].resealed == 12
    assert statuses(runtime) == {1: "retired", 2: "retired", 3: "active"}
    keys = physician_keys(runtime)
    assert [wraps_sealed_to(runtime, keys[v]) for v in (1, 2, 3)] == [0, 0, 12]
    reader = sign_in(runtime, world.clinician).principal
    for conversation_id in world.deks:
        assert "after the loss" in read_bodies(runtime, reader, conversation_id)


def test_a_loss_during_a_rotation_keeps_its_successor_for_the_next_rotation(runtime):
    """A holder lost the key after the rotation's new key reached them: the successor made
    then (a higher version) is not retired by that rotation; new epochs go to it, and the
    next rotation retires it."""
    world = rotation_world(runtime, conversations=2)
    leaver = make_staff(runtime, Role.CLINICIAN)
    grant(runtime, world.clinician, leaver)
    rotate(runtime, world.clinician, prepare_only=True)  # v2 pending, sealed to the leaver too
    revoke(runtime, world.clinician, leaver)
    assert statuses(runtime) == {1: "active", 2: "pending", 3: "successor"}

    assert rotate(runtime, world.clinician).retired
    assert statuses(runtime) == {1: "retired", 2: "active", 3: "successor"}
    doctor = sign_in(runtime, world.colleague).principal
    first = next(iter(world.deks))
    reply(runtime, doctor, first, "after the first rotation")
    keys = physician_keys(runtime)
    assert wraps_sealed_to(runtime, keys[3]) == 1  # not the v2 the leaver held

    result = rotate(runtime, world.clinician)
    assert (result.to_version, result.retired) == (4, True)
    assert statuses(runtime) == {1: "retired", 2: "retired", 3: "retired", 4: "active"}
    assert audit_details(runtime, "role_key.retire")[-1]["successors_retired"] == [3]
    reader = sign_in(runtime, world.clinician).principal
    assert "after the first rotation" in read_bodies(runtime, reader, first)
