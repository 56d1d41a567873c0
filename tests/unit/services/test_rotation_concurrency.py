"""A role-key rotation while the service keeps writing: real database, real crypto.

Hosts keep creating conversations and sending messages while a rotation runs, and a host may
have read the old key as active just before the activation: each such conversation's wrap
must end sealed to the new key, or the old key could not retire (or, retired, would strand
the conversation). Here a wrap arriving behind the cursor is found by the sweep, the
activation waits for a conversation being sealed to the old key, and members and a doctor
sending in threads lose nothing while the wraps are re-sealed. A rotation with nothing else
running, read back by holders, is in tests/unit/services/test_rotation.py.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import delete, func, select

from medchat.models import Conversation, ConversationKeyWrap, ConversationStatus, Holder, Message
from tests.support.conversations import read_bodies, reply, start_conversation
from tests.support.rotation import (
    physician_keys,
    readable_by,
    rotate,
    rotation_world,
    statuses,
    wraps_sealed_to,
)
from tests.support.sessions import sign_in


@pytest.fixture
def world(runtime):
    return rotation_world(runtime, conversations=12, members=3)


def test_a_wrap_sealed_to_the_old_key_behind_the_cursor_is_found_by_the_sweep(runtime, world):
    rotate(runtime, world.clinician, batch_size=50, max_batches=1)  # one pass, not yet swept
    old = physician_keys(runtime)[1]
    # A conversation created by a host that read the old key as active just before the
    # activation, with an id before the cursor: its wrap arrives behind the re-sealing.
    member = sign_in(runtime, world.members[0]).principal
    started = start_conversation(runtime, member, subject=None, bodies=["late"])
    late = uuid.UUID(int=1)
    with runtime.database.transaction() as session:
        conversation = session.get(Conversation, started.id)
        session.execute(
            delete(ConversationKeyWrap).where(
                ConversationKeyWrap.conversation_id == started.id,
                ConversationKeyWrap.holder == Holder.PHYSICIAN,
            )
        )
        copy = Conversation(
            id=late,
            member_id=conversation.member_id,
            status=ConversationStatus.OPEN,
            message_count=0,
            created_at=conversation.created_at,
            last_message_at=conversation.created_at,
            status_since=conversation.created_at,
        )
        session.add(copy)
        with session.no_autoflush:
            keys = runtime.conversation_keys(session)
            dek = keys.new_key(copy, runtime.clock.now()).of(1)
            session.execute(
                delete(ConversationKeyWrap).where(
                    ConversationKeyWrap.conversation_id == late,
                    ConversationKeyWrap.holder == Holder.PHYSICIAN,
                )
            )
            keys.add_wrap(
                copy, dek, Holder.PHYSICIAN, old.id, old.public_key, old.key_id, copy.created_at
            )
    assert wraps_sealed_to(runtime, old) == 1

    result = rotate(runtime, world.clinician, batch_size=50)

    assert result.retired and wraps_sealed_to(runtime, old) == 0
    assert readable_by(runtime, sign_in(runtime, world.colleague).principal.keyring, {late: dek})


def test_concurrent_sends_and_new_conversations_lose_nothing_during_a_rotation(runtime, world):
    members = [sign_in(runtime, person).principal for person in world.members]
    doctor = sign_in(runtime, world.colleague).principal  # signed in before the rotation
    owned = {m.id: [c for c in world.deks if _member_of(runtime, c) == m.id] for m in members}
    sent: list[tuple[uuid.UUID, str]] = []
    created: dict[uuid.UUID, bytes] = {}
    errors: list[BaseException] = []
    done = threading.Event()
    lock = threading.Lock()

    def keep_going(count: int) -> bool:
        # A short pause between sends lets SQLite's writer lock reach the rotation too.
        time.sleep(0.01)
        return count < 4 or (not done.is_set() and count < 200)

    def members_send() -> None:
        n = 0
        while keep_going(n):
            member = members[n % len(members)]
            conversation_id = owned[member.id][n % len(owned[member.id])]
            body = f"member message {n}"
            reply(runtime, member, conversation_id, body)
            with lock:
                sent.append((conversation_id, body))
            n += 1

    def doctor_sends() -> None:
        n = 0
        ids = list(world.deks)
        while keep_going(n):
            body = f"doctor message {n}"
            reply(runtime, doctor, ids[n % len(ids)], body)
            with lock:
                sent.append((ids[n % len(ids)], body))
            n += 1

    def members_ask() -> None:
        n = 0
        while keep_going(n):
            started = start_conversation(
                runtime, members[n % len(members)], subject=None, bodies=[f"new question {n}"]
            )
            with lock:
                created[started.id] = started.dek
                sent.append((started.id, f"new question {n}"))
            n += 1

    def guarded(work):
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # reported below
                errors.append(exc)

        return run

    during: list[int] = []

    def progress(done_wraps: int, total: int) -> None:
        with lock:
            during.append(len(sent))
        time.sleep(0.03)  # SQLite hands its lock to whoever retries first: let the senders in

    threads = [
        threading.Thread(target=guarded(w)) for w in (members_send, doctor_sends, members_ask)
    ]
    for thread in threads:
        thread.start()
    try:
        result = rotate(runtime, world.clinician, batch_size=3, progress=progress)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=120)
    assert not errors, errors
    assert result.retired
    assert during[-1] > during[0], "nothing was sent while the wraps were re-sealed"
    with runtime.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 12 + len(sent)
    every = {**world.deks, **created}
    old = physician_keys(runtime)[1]
    assert wraps_sealed_to(runtime, old) == 0
    for holder in (world.clinician, world.colleague):
        assert readable_by(runtime, sign_in(runtime, holder).principal.keyring, every) == len(every)
    reader = sign_in(runtime, world.clinician).principal
    for conversation_id, body in sent:
        assert body in read_bodies(runtime, reader, conversation_id)


def _member_of(runtime, conversation_id: uuid.UUID) -> uuid.UUID:
    with runtime.database.transaction() as session:
        return session.get(Conversation, conversation_id).member_id


def test_the_activation_waits_for_a_conversation_being_sealed_to_the_old_key(runtime, world):
    """A host mid-request has read the old key as active and sealed to it, not committed yet:
    the activation waits for it, so its wrap is re-sealed and not stranded on a retired key."""
    member = sign_in(runtime, world.members[0]).principal
    session = runtime.database.session()
    try:
        now = runtime.clock.now()
        conversation = Conversation(
            id=uuid.uuid4(),
            member_id=member.id,
            status=ConversationStatus.OPEN,
            message_count=0,
            created_at=now,
            last_message_at=now,
            status_since=now,
        )
        session.add(conversation)
        with session.no_autoflush:
            dek = runtime.conversation_keys(session).new_key(conversation, now).of(1)
        session.flush()
        outcome: list[object] = []
        rotation = threading.Thread(
            target=lambda: outcome.append(rotate(runtime, world.clinician, batch_size=5))
        )
        rotation.start()
        rotation.join(timeout=1.5)
        assert rotation.is_alive(), "the rotation did not wait for the open transaction"
        if runtime.database.is_postgresql:  # SQLite: its writer lock held the whole run back
            assert statuses(runtime) == {1: "active", 2: "pending"}
        session.commit()
    finally:
        session.close()
    rotation.join(timeout=60)
    assert outcome and outcome[0].retired and outcome[0].resealed == 13
    assert wraps_sealed_to(runtime, physician_keys(runtime)[1]) == 0
    keyring = sign_in(runtime, world.colleague).principal.keyring
    assert readable_by(runtime, keyring, {conversation.id: dek}) == 1
