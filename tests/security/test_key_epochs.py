"""Whoever loses access reads nothing written afterwards (issue 18, item 2: key epochs).

Before key epochs a conversation kept one DEK for life: a holder who lost the physician key
(revoked, disabled, reset) and kept it, or rebuilt it from a database copy taken earlier and
their password, unwrapped each DEK once and read everything written later from any later copy,
even after the rotation; a member's old password did the same after a password reset. Here the
attacker works offline on copies of the database (``tests/support/key_copies.py``), with
everything they could have kept, and every test first checks that the attack does read the
history (so a failure to read what came later is the keys', not the test's).

What is promised, event by event (``docs/security.md``, "Key epochs"):

- a holder loses the role key: content written afterwards is under a new DEK, so conversation
  keys they kept open none of it at once; the role key they kept opens none of what is written
  after the rotation the loss makes due, even with a copy taken at any time in between (the
  window until the rotation is bounded by the rotation deadline:
  ``test_rotation_deadline.py``);
- a member's password reset: nothing written afterwards opens with the old password, from any
  copy;
- the people who still hold the keys read the whole history, every epoch of it.
"""

from __future__ import annotations

import io
import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat.errors import ContentResealed
from medchat.models import ConversationKeyEpoch, Holder, KeyReaderRemoval, KeyRole
from medchat.services.conversation_access import ConversationAccess
from medchat.services.conversations import ConversationService
from tests.support.accounts import Person, bearer, login, make_member, make_staff
from tests.support.archive import archive_colleague, retrieve, seal, verify_ledger
from tests.support.conversations import read_bodies, reply, start_conversation
from tests.support.key_copies import (
    deks_from,
    personal_keys_from,
    readable,
    role_keys_from,
    take_copy,
)
from tests.support.mailbox import delivered, reset_token_in
from tests.support.messaging import (
    CONVERSATIONS,
    asked,
    care_team,
    claim,
    count,
    give_consent,
    send,
)
from tests.support.rotation import grant, revoke, rotate
from tests.support.sample_files import pdf
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql
from tests.support.wraps import assert_only_the_three_holders

CLINICIAN = "/api/v1/clinician"
NEW_PASSWORD = "lichen-tundra-pelican-86"


def _upload(client: Any, path: str, auth: dict[str, str], mark: str) -> None:
    response = client.post(
        path,
        headers=auth,
        data={"file": (io.BytesIO(pdf(mark)), "result.pdf", "application/pdf")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()


def _write(client: Any, member: dict, doctor: dict, conversation_id: str, tag: str) -> set[str]:
    """A member message, a doctor's reply and a file, each carrying ``tag``; returns the marks."""
    mine = f"{CONVERSATIONS}/{conversation_id}"
    theirs = f"{CLINICIAN}/conversations/{conversation_id}"
    marks = {f"{tag} member", f"{tag} doctor", f"{tag} file"}
    assert send(client, member, f"{mine}/messages", f"{tag} member").status_code == 201
    claim(client, doctor, conversation_id)  # answering needs it (renewed if held)
    assert send(client, doctor, f"{theirs}/messages", f"{tag} doctor").status_code == 201
    _upload(client, f"{mine}/attachments", bearer(member), f"{tag} file")
    return marks


def _read(found: set[str], marks: set[str]) -> set[str]:
    return {mark for mark in marks if any(mark in text for text in found)}


def _history(client: Any, auth: dict[str, str], path: str) -> list[str]:
    response = client.get(f"{path}/messages?order=asc&limit=100", headers=auth)
    assert response.status_code == 200, response.get_json()
    return [item["body"] for item in response.get_json()["items"]]


def _remove(event: str, client: Any, runtime: Any, alice: Person, bob: Person) -> Any:
    """Take the physician key from ``bob`` the way ``event`` says; returns the answer."""
    if event == "revoke":
        auth = bearer(login(client, runtime, alice))
        return client.delete(
            f"{CLINICIAN}/colleagues/{bob.id}/grant",
            json={"password": alice.password},
            headers=auth,
        )
    admin = bearer(login(client, runtime, make_staff(runtime, Role.ADMIN)))
    return client.post(f"/api/v1/admin/accounts/{bob.id}/{event}", headers=admin)


@pytest.mark.parametrize("event", ["revoke", "disable", "reset"])
def test_a_holder_who_lost_the_key_reads_nothing_written_afterwards(client, runtime, event):
    team = care_team(runtime)
    alice = team.clinician
    bob = make_staff(runtime, Role.CLINICIAN, first_name="Bob", last_name="Leaver")
    grant(runtime, alice, bob)
    member = login(client, runtime, make_member(runtime))
    give_consent(client, member)
    doctor = login(client, runtime, alice)
    conversation_id = asked(client, member, "BEFORE question", subject="BEFORE subject")
    before = {"BEFORE question", "BEFORE subject"} | _write(
        client, member, doctor, conversation_id, "BEFORE"
    )
    early = take_copy(runtime)  # taken while Bob held the key
    bob_role_keys = role_keys_from(early, bob.id, bob.password, KeyRole.PHYSICIAN)
    kept = deks_from([early], Holder.PHYSICIAN, bob_role_keys)  # what Bob could keep
    assert _read(readable(early, kept), before) == before

    removed = _remove(event, client, runtime, alice, bob)
    assert removed.status_code in (201, 204), removed.get_json()
    assert count(runtime, KeyReaderRemoval) == 1
    doctor = login(client, runtime, alice)
    after_loss = _write(client, member, doctor, conversation_id, "AFTER-LOSS")
    middle = take_copy(runtime)

    # The conversation keys Bob kept open the history and nothing written since the loss.
    assert _read(readable(middle, kept), before | after_loss) == before

    rotate(runtime, alice)
    doctor = login(client, runtime, alice)
    after_rotation = _write(client, member, doctor, conversation_id, "AFTER-ROTATION")
    late = take_copy(runtime)

    # The role key Bob kept, or rebuilt from the early copy and his password, tried on every
    # wrap of every copy, opens nothing written after the rotation.
    reach = deks_from([early, middle, late], Holder.PHYSICIAN, bob_role_keys)
    opened = _read(readable(late, reach), before | after_loss | after_rotation)
    assert before <= opened
    assert not opened & after_rotation
    assert deks_from([late], Holder.PHYSICIAN, bob_role_keys) == set()

    # Alice reads the whole conversation, every epoch of it.
    path = f"{CLINICIAN}/conversations/{conversation_id}"
    bodies = _history(client, bearer(doctor), path)
    expected = {m for m in before | after_loss | after_rotation if "file" not in m}
    assert expected - {"BEFORE subject"} <= set(bodies)
    with runtime.database.transaction() as session:
        epochs = session.scalars(
            select(ConversationKeyEpoch.epoch).where(
                ConversationKeyEpoch.conversation_id == uuid.UUID(conversation_id)
            )
        )
        assert sorted(epochs) == [1, 2, 3]


def test_an_old_password_reads_nothing_written_after_the_reset(make_app, tmp_path):
    app = make_app(mail_url=f"file://{tmp_path}")
    runtime, client = app.extensions["medchat"], app.test_client()
    team = care_team(runtime)
    person = make_member(runtime)
    member = login(client, runtime, person)
    give_consent(client, member)
    doctor = login(client, runtime, team.clinician)
    conversation_id = asked(client, member, "BEFORE question", subject="BEFORE subject")
    before = {"BEFORE question", "BEFORE subject"} | _write(
        client, member, doctor, conversation_id, "BEFORE"
    )
    early = take_copy(runtime)
    old_keys = personal_keys_from(early, person.id, person.password)
    assert old_keys
    assert _read(readable(early, deks_from([early], Holder.MEMBER, old_keys)), before) == before

    assert (
        client.post("/api/v1/auth/password-reset", json={"email": person.email}).status_code == 202
    )
    token = reset_token_in(delivered(runtime, tmp_path)[-1][0])
    confirmed = client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"reset_token": token, "new_password": NEW_PASSWORD},
    )
    assert confirmed.status_code == 204, confirmed.get_json()
    # The doctor answers first (their request also re-seals the history to the new key),
    # then the member writes again with the new password.
    doctor = login(client, runtime, team.clinician)
    theirs = f"{CLINICIAN}/conversations/{conversation_id}"
    assert send(client, doctor, f"{theirs}/messages", "AFTER doctor").status_code == 201
    renewed = Person(person.id, person.email, NEW_PASSWORD, Role.MEMBER)
    member = login(client, runtime, renewed)
    mine = f"{CONVERSATIONS}/{conversation_id}"
    assert send(client, member, f"{mine}/messages", "AFTER member").status_code == 201
    _upload(client, f"{mine}/attachments", bearer(member), "AFTER file")
    after = {"AFTER doctor", "AFTER member", "AFTER file"}
    late = take_copy(runtime)

    # The old password opens the old personal key in the early copy (never in the late one),
    # which opens every member wrap of either copy it can: history only.
    assert personal_keys_from(late, person.id, person.password) == []
    reach = deks_from([early, late], Holder.MEMBER, old_keys)
    opened = _read(readable(late, reach), before | after)
    assert before <= opened
    assert not opened & after

    # Both epochs are wrapped to the current keys only: the old personal key has none.
    holders = assert_only_the_three_holders(
        runtime,
        person.id,
        physician=sign_in(runtime, team.clinician).principal.keyring,
        archive=sign_in(runtime, team.compliance).principal.keyring,
        member=sign_in(runtime, renewed).principal.keyring,
    )
    assert holders == {"physician": 2, "archive": 2, "member": 2}

    # The member, with the new password, reads everything, old epoch and new.
    bodies = set(_history(client, bearer(member), mine))
    assert {"BEFORE question", "BEFORE member", "BEFORE doctor", "AFTER doctor"} <= bodies
    assert {"AFTER member"} <= bodies


def test_a_sealed_record_binds_and_opens_every_epoch(client, runtime):
    """Sealing lifts the archive gate of every epoch; the record's hash binds each epoch's
    commitment; a retrieval reads the whole history; an epoch's row removed from the record
    fails ``archive verify``."""
    team = care_team(runtime)
    person = make_member(runtime)
    member = login(client, runtime, person)
    give_consent(client, member)
    doctor = login(client, runtime, team.clinician)
    conversation_id = asked(client, member, "epoch one")
    bob = make_staff(runtime, Role.CLINICIAN, first_name="Bob", last_name="Leaver")
    grant(runtime, team.clinician, bob)
    assert _remove("revoke", client, runtime, team.clinician, bob).status_code == 204
    doctor = login(client, runtime, team.clinician)
    theirs = f"{CLINICIAN}/conversations/{conversation_id}/messages"
    claim(client, doctor, conversation_id)
    assert send(client, doctor, theirs, "epoch two").status_code == 201
    seal(runtime, sign_in(runtime, person).principal, uuid.UUID(conversation_id))

    assert verify_ledger(runtime).ok
    colleague = archive_colleague(runtime, team.compliance)
    opened = retrieve(runtime, team.compliance, colleague, uuid.UUID(conversation_id))
    assert [m.body for m in opened.messages] == ["epoch one", "epoch two"]
    execute_sql(
        runtime,
        "DELETE FROM conversation_key_epochs WHERE conversation_id = :id AND epoch = 2",
        id=uuid.UUID(conversation_id),
    )
    assert not verify_ledger(runtime).ok


def _epochs(runtime: Any, conversation_id: uuid.UUID) -> list[int]:
    with runtime.database.transaction() as session:
        return sorted(
            session.scalars(
                select(ConversationKeyEpoch.epoch).where(
                    ConversationKeyEpoch.conversation_id == conversation_id
                )
            )
        )


def test_two_writers_after_a_loss_start_one_epoch_between_them(runtime):
    """A writer that read the conversation before another one started the new epoch seals
    under that epoch (read again), never starts a second one nor seals to the stale one."""
    if not runtime.database.is_postgresql:
        pytest.skip("SQLite runs one unit of work at a time (BEGIN IMMEDIATE)")
    team = care_team(runtime)
    bob = make_staff(runtime, Role.CLINICIAN, first_name="Bob", last_name="Leaver")
    grant(runtime, team.clinician, bob)
    member = sign_in(runtime, make_member(runtime)).principal
    doctor = sign_in(runtime, team.clinician).principal
    started = start_conversation(runtime, member, subject=None, bodies=["first"])
    revoke(runtime, team.clinician, bob)

    # Read (and the row locked) before the member's reply starts epoch 2 and commits.
    session = runtime.database.session()
    try:
        access = ConversationAccess(session, runtime)
        conversation = access.load(doctor, started.id, for_update=True)
        deks = access.open_key(doctor, conversation)
        assert deks.epochs() == [1]
        replying = threading.Thread(target=reply, args=(runtime, member, started.id, "second"))
        replying.start()
        replying.join(timeout=1.0)
        assert replying.is_alive(), "the reply did not wait for the locked row"
        ConversationService(session, runtime).append_message(conversation, deks, doctor, "third")
        session.commit()
    finally:
        session.close()
    replying.join(timeout=30)

    assert _epochs(runtime, started.id) == [1, 2]
    assert read_bodies(runtime, member, started.id) == ["first", "third", "second"]

    # The other order: read unlocked, overtaken by a send that starts epoch 3 after a loss.
    carol = make_staff(runtime, Role.CLINICIAN, first_name="Carol", last_name="Leaver")
    grant(runtime, team.clinician, carol)
    revoke(runtime, team.clinician, carol)
    doctor = sign_in(runtime, team.clinician).principal
    with runtime.database.transaction() as session:
        access = ConversationAccess(session, runtime)
        conversation = access.load(doctor, started.id)
        deks = access.open_key(doctor, conversation)
        reply(runtime, member, started.id, "fourth")  # starts epoch 3, commits
        ConversationService(session, runtime).append_message(conversation, deks, doctor, "fifth")
    assert _epochs(runtime, started.id) == [1, 2, 3]
    assert read_bodies(runtime, member, started.id)[-2:] == ["fourth", "fifth"]


def test_a_read_overtaken_by_a_new_epoch_is_told_to_retry_not_refused(runtime):
    """A page read whose keys were opened just before a send began a new epoch meets a body
    under a key it does not hold: ``409 content_resealed`` (retry), never a tampering refusal."""
    if not runtime.database.is_postgresql:
        pytest.skip("SQLite runs one unit of work at a time (BEGIN IMMEDIATE)")
    team = care_team(runtime)
    bob = make_staff(runtime, Role.CLINICIAN, first_name="Bob", last_name="Leaver")
    grant(runtime, team.clinician, bob)
    member = sign_in(runtime, make_member(runtime)).principal
    doctor = sign_in(runtime, team.clinician).principal
    started = start_conversation(runtime, member, subject=None, bodies=["first"])
    revoke(runtime, team.clinician, bob)

    with runtime.database.transaction() as session:
        service = ConversationService(session, runtime)
        conversation = service.access.load(doctor, started.id)
        deks = service.access.open_key(doctor, conversation)
        reply(runtime, member, started.id, "second")  # epoch 2, committed meanwhile
        with pytest.raises(ContentResealed):
            service.message_page(conversation, deks, limit=10)
    assert read_bodies(runtime, doctor, started.id) == ["first", "second"]
