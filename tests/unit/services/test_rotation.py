"""Role-key rotation (SECURITY-MODEL key hierarchy 4, 8, 9, 11): real database, real crypto.

What a rotation leaves behind is read back with freshly signed-in keyrings: every current
holder opens every conversation, a revoked holder opens none (not with a new sign-in, and not
with a copy of the old role key either), and an interrupted run resumes from its cursor.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
from sqlalchemy import delete, func, select

from access_control.roles import Role
from medchat.errors import NotFound, RoleKeyRequired
from medchat.keys.rotation import PinRequired, RotationBlocked, RotationService
from medchat.keys.status import key_status
from medchat.models import (
    Conversation,
    ConversationKeyWrap,
    ConversationStatus,
    Holder,
    KeyRole,
    Message,
    RoleKeyGrant,
    RoleKeyRotation,
)
from medchat.services.accounts import AccountService
from tests.support.accounts import make_staff
from tests.support.conversations import read_bodies, reply, start_conversation
from tests.support.rotation import (
    audit_details,
    grant,
    open_as,
    physician_keys,
    readable_by,
    revoke,
    rotate,
    rotation_world,
    statuses,
    wraps_sealed_to,
)
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql
from tests.support.wraps import assert_only_the_three_holders


@pytest.fixture
def world(runtime):
    return rotation_world(runtime, conversations=12, members=3)


def _status(runtime):
    with runtime.database.transaction() as session:
        return key_status(session, runtime.custody(session))


def test_a_rotation_leaves_every_conversation_to_the_current_holders_and_none_to_a_revoked_one(
    runtime, world
):
    leaver = make_staff(runtime, Role.CLINICIAN)
    grant(runtime, world.clinician, leaver)
    copied_keyring = sign_in(runtime, leaver).principal.keyring  # what the leaver kept
    assert readable_by(runtime, copied_keyring, world.deks) == 12
    assert revoke(runtime, world.clinician, leaver) == ["physician"]

    result = rotate(runtime, world.clinician, batch_size=5)

    # v2 is the successor the revocation made (``medchat.keys.successors``): the rotation
    # makes its own key and retires both.
    assert (result.from_version, result.to_version) == (1, 3)
    assert (result.resealed, result.retired) == (12, True)
    assert result.grants == 2  # the starter, then the colleague; never the leaver
    assert statuses(runtime) == {1: "retired", 2: "retired", 3: "active"}
    for holder in (world.clinician, world.colleague):
        keyring = sign_in(runtime, holder).principal.keyring
        assert [k.role_key_id for k in keyring.role_keys(KeyRole.PHYSICIAN)] == [
            physician_keys(runtime)[3].id
        ]
        assert readable_by(runtime, keyring, world.deks) == 12
    # The leaver: no grant left, and the old role key they copied names no wrap any more.
    assert not sign_in(runtime, leaver).principal.keyring.holds_role(KeyRole.PHYSICIAN)
    assert readable_by(runtime, copied_keyring, world.deks) == 0
    old = physician_keys(runtime)[1]
    assert wraps_sealed_to(runtime, old) == 0
    with runtime.database.transaction() as session:
        assert not session.scalar(
            select(func.count()).select_from(RoleKeyGrant).where(RoleKeyGrant.role_key_id == old.id)
        )
        leftovers = session.scalars(select(ConversationKeyWrap.wrap)).all()
    assert all(old.key_id not in wrap[:11] for wrap in leftovers)
    batches = audit_details(runtime, "role_key.rewrap_batch")
    assert [b["resealed"] for b in batches] == [5, 5, 2]
    for action in ("role_key.rotation_start", "role_key.activate", "role_key.retire"):
        assert len(audit_details(runtime, action)) == 1


def test_the_archive_wraps_and_the_member_wraps_are_left_alone(runtime, world):
    with runtime.database.transaction() as session:
        before = set(
            session.scalars(
                select(ConversationKeyWrap.wrap).where(
                    ConversationKeyWrap.holder != Holder.PHYSICIAN
                )
            )
        )
    rotate(runtime, world.clinician)
    with runtime.database.transaction() as session:
        after = set(
            session.scalars(
                select(ConversationKeyWrap.wrap).where(
                    ConversationKeyWrap.holder != Holder.PHYSICIAN
                )
            )
        )
    assert before == after and len(after) == 24


def test_the_new_key_is_pinned_before_activation_and_the_old_one_unpinned_after(runtime, world):
    old = physician_keys(runtime)[1]

    prepared = rotate(runtime, world.clinician, prepare_only=True)

    new = physician_keys(runtime)[2]
    assert (prepared.activated, prepared.grants) == (False, 2)
    assert statuses(runtime) == {1: "active", 2: "pending"}
    assert {old.fingerprint, new.fingerprint} <= runtime.pins.current()["physician"]
    assert wraps_sealed_to(runtime, new) == 0
    # Until activation new conversations are sealed to the old key.
    member = sign_in(runtime, world.members[0]).principal
    started = start_conversation(runtime, member, subject=None, bodies=["meanwhile"])
    assert open_as(runtime, sign_in(runtime, world.colleague).principal.keyring, started.id)

    finished = rotate(runtime, world.colleague)  # resumed by a holder granted in step 2

    assert finished.retired and finished.resealed == 13
    assert runtime.pins.current()["physician"] == {new.fingerprint}


def test_activation_is_refused_while_the_new_key_is_not_pinned(runtime, world):
    rotate(runtime, world.clinician, prepare_only=True)
    new = physician_keys(runtime)[2]
    actor = sign_in(runtime, world.clinician).principal  # holds v1 and v2
    runtime.pins.retire("physician", [new.fingerprint])  # the pin lost before activation

    with pytest.raises(PinRequired, match=new.fingerprint):
        RotationService(runtime, actor, KeyRole.PHYSICIAN).run()

    assert statuses(runtime) == {1: "active", 2: "pending"}
    assert wraps_sealed_to(runtime, new) == 0


def test_an_interrupted_rotation_resumes_from_its_cursor(runtime, world):
    first = rotate(runtime, world.clinician, batch_size=2, max_batches=2)

    assert (first.activated, first.retired, first.resealed) == (True, False, 4)
    old, new = physician_keys(runtime)[1], physician_keys(runtime)[2]
    assert (wraps_sealed_to(runtime, old), wraps_sealed_to(runtime, new)) == (8, 4)
    with runtime.database.transaction() as session:
        rotation = session.scalar(select(RoleKeyRotation))
        assert rotation.cursor is not None and rotation.resealed == 4
        done = session.scalars(
            select(ConversationKeyWrap.conversation_id).where(
                ConversationKeyWrap.recipient_key_id == new.key_id
            )
        ).all()
    assert max(done) == rotation.cursor
    # Half-way, every conversation still opens for a holder signed in now.
    keyring = sign_in(runtime, world.colleague).principal.keyring
    assert readable_by(runtime, keyring, world.deks) == 12

    second = rotate(runtime, world.colleague, batch_size=2)

    assert (second.resealed, second.retired, second.grants) == (12, True, 0)
    assert [b["resealed"] for b in audit_details(runtime, "role_key.rewrap_batch")] == [2] * 6
    assert readable_by(runtime, sign_in(runtime, world.clinician).principal.keyring, world.deks)


def test_a_run_stopped_before_the_grants_is_resumed_by_its_starter(runtime, world, monkeypatch):
    def crash(self, plan):
        raise RuntimeError("killed")

    with monkeypatch.context() as patch:
        patch.setattr(RotationService, "_grant_holders", crash)
        with pytest.raises(RuntimeError):
            rotate(runtime, world.clinician)
    assert statuses(runtime) == {1: "active", 2: "pending"}

    result = rotate(runtime, world.clinician)  # the new key comes back from the starter's grant

    assert (result.to_version, result.retired, result.grants) == (2, True, 1)
    assert readable_by(runtime, sign_in(runtime, world.colleague).principal.keyring, world.deks)


def test_a_run_stopped_before_the_grants_is_started_over_by_another_holder(
    runtime, world, monkeypatch
):
    with monkeypatch.context() as patch:
        patch.setattr(RotationService, "_grant_holders", lambda self, plan: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            rotate(runtime, world.clinician)
    abandoned = physician_keys(runtime)[2]

    result = rotate(runtime, world.colleague)  # holds no copy of v2: nothing was sealed to it

    assert (result.from_version, result.to_version, result.retired) == (1, 3, True)
    assert statuses(runtime) == {1: "retired", 2: "retired", 3: "active"}
    assert abandoned.fingerprint not in runtime.pins.current()["physician"]
    assert len(audit_details(runtime, "role_key.rotation_abandon")) == 1
    assert readable_by(runtime, sign_in(runtime, world.clinician).principal.keyring, world.deks)


def test_a_session_opened_before_the_rotation_keeps_reading(runtime, world):
    before = sign_in(runtime, world.colleague).principal
    rotate(runtime, world.clinician)

    assert readable_by(runtime, before.keyring, world.deks) == 12
    member = sign_in(runtime, world.members[0]).principal
    started = start_conversation(runtime, member, subject=None, bodies=["after the rotation"])
    assert read_bodies(runtime, before, started.id) == ["after the rotation"]


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


def test_a_wrap_that_does_not_open_keeps_the_old_key(runtime, world):
    first, second = list(world.deks)[:2]
    execute_sql(
        runtime,
        "UPDATE conversation_key_wraps SET wrap = (SELECT wrap FROM conversation_key_wraps "
        "WHERE conversation_id = :source AND holder = 'physician') "
        "WHERE conversation_id = :target AND holder = 'physician'",
        source=second,
        target=first,
    )

    with pytest.raises(RotationBlocked, match="1 physician wraps do not open"):
        rotate(runtime, world.clinician, batch_size=5)

    old = physician_keys(runtime)[1]
    assert statuses(runtime) == {1: "retiring", 2: "active"}
    assert wraps_sealed_to(runtime, old) == 1
    failed = [b for b in audit_details(runtime, "role_key.rewrap_batch") if b["failed"]]
    assert failed[0]["failed_conversations"] == [str(first)]


def test_a_clinician_without_the_key_cannot_rotate(runtime, world):
    outsider = make_staff(runtime, Role.CLINICIAN)
    with pytest.raises(RoleKeyRequired):
        rotate(runtime, outsider)
    with pytest.raises(RoleKeyRequired):
        rotate(runtime, world.compliance)  # holds the archive key, not the physician key
    assert statuses(runtime) == {1: "active"}


def test_the_archive_key_rotates_the_same_way(runtime, world):
    result = rotate(runtime, world.compliance, KeyRole.ARCHIVE, batch_size=5)

    assert (result.resealed, result.retired) == (12, True)
    # Live conversations: each archive wrap is gated again and, through its gate, opens with
    # the new archive key to the conversation's DEK (``docs/archive.md``; sealed records are
    # opened by a retrieval in ``tests/security/test_archive_gate.py``).
    archive = sign_in(runtime, world.compliance).principal.keyring
    physician = sign_in(runtime, world.clinician).principal.keyring
    counted: Counter[str] = Counter()
    for person in world.members:
        member = sign_in(runtime, person).principal.keyring
        counted += assert_only_the_three_holders(
            runtime, person.id, physician=physician, archive=archive, member=member
        )
    assert counted == {"archive": 12, "physician": 12, "member": 12}
    assert statuses(runtime) == {1: "active"}  # the physician key did not move


def test_revoking_and_disabling_make_a_rotation_due_and_a_rotation_clears_it(runtime, world):
    assert _status(runtime).due() == []
    assert revoke(runtime, world.clinician, world.colleague) == ["physician"]
    assert revoke(runtime, world.clinician, world.colleague) == []  # nothing left to revoke
    due = _status(runtime).due()
    assert [(v.role, v.version, v.rotation_due_reason) for v in due] == [
        ("physician", 1, "grant_revoked")
    ]
    grant(runtime, world.clinician, world.colleague)
    with runtime.database.transaction() as session:
        assert AccountService(session, runtime).disable(world.colleague.id) == ["physician"]
        assert AccountService(session, runtime).disable(world.members[0].id) == []
    assert _status(runtime).due()[0].rotation_due_reason == "grant_revoked"  # the first reason

    rotate(runtime, world.clinician)

    assert _status(runtime).due() == []


def test_a_revocation_during_a_rotation_leaves_the_new_key_due(runtime, world):
    rotate(runtime, world.clinician, prepare_only=True)  # the colleague holds v2 already
    revoke(runtime, world.clinician, world.colleague)

    rotate(runtime, world.clinician)

    assert [(v.version, v.status) for v in _status(runtime).due()] == [(2, "active")]


def test_keys_status_counts_wraps_and_holders_per_version(runtime, world):
    rotate(runtime, world.clinician, batch_size=5, max_batches=1)

    status = _status(runtime)

    physician = {v.version: v for v in status.versions if v.role == "physician"}
    assert (physician[1].status, physician[1].wraps, physician[1].holders) == ("retiring", 7, 2)
    assert (physician[2].status, physician[2].wraps, physician[2].holders) == ("active", 5, 2)
    assert physician[1].pinned and physician[2].pinned
    archive = [v for v in status.versions if v.role == "archive"]
    assert [(v.wraps, v.holders) for v in archive] == [(12, 1)]
    [progress] = status.rotations
    assert (progress.from_version, progress.to_version) == (1, 2)
    assert (progress.resealed, progress.remaining) == (5, 7)
    assert progress.activated_at is not None


def test_environment_pins_stop_the_rotation_until_the_operator_adds_the_new_one(
    make_app, runtime, world
):
    old = physician_keys(runtime)[1]
    pins = f"physician:{old.fingerprint},archive:{_archive_fingerprint(runtime)}"
    pinned_env = make_app(role_key_pins=pins).extensions["medchat"]

    with pytest.raises(PinRequired, match="MEDCHAT_ROLE_KEY_PINS") as refused:
        rotate(pinned_env, world.clinician)

    new = physician_keys(runtime)[2]
    assert refused.value.fingerprint == new.fingerprint
    assert statuses(runtime) == {1: "active", 2: "pending"}
    # Hosts restarted meanwhile start, and holders still sign in (without the pending key).
    restarted = make_app(role_key_pins=pins).extensions["medchat"]
    keyring = sign_in(restarted, world.colleague).principal.keyring
    assert readable_by(restarted, keyring, world.deks) == 12

    updated = make_app(role_key_pins=f"{pins},physician:{new.fingerprint}").extensions["medchat"]
    result = rotate(updated, world.colleague)

    assert result.retired and result.unpin == old.fingerprint
    assert readable_by(updated, sign_in(updated, world.clinician).principal.keyring, world.deks)


def _archive_fingerprint(runtime) -> str:
    return next(iter(runtime.pins.current()["archive"]))


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


def test_a_revoked_holder_is_not_handed_the_new_key(runtime, world):
    """The grant step seals the new key only to accounts that still hold the old one."""
    rotate(runtime, world.clinician, prepare_only=True)
    revoke(runtime, world.clinician, world.colleague)
    grant(runtime, world.clinician, world.colleague)  # re-granted by a session holding v1 and v2
    revoke(runtime, world.clinician, world.colleague)

    rotate(runtime, world.clinician)

    with pytest.raises(RoleKeyRequired):
        read_bodies(runtime, sign_in(runtime, world.colleague).principal, next(iter(world.deks)))
    with runtime.database.transaction() as session:
        holders = session.scalars(select(RoleKeyGrant.account_id)).all()
    assert world.colleague.id not in holders


def test_a_conversation_opens_for_nobody_without_a_grant(runtime, world):
    rotate(runtime, world.clinician)
    outsider = make_staff(runtime, Role.CLINICIAN)
    keyring = sign_in(runtime, outsider).principal.keyring
    with pytest.raises(NotFound):
        open_as(runtime, keyring, next(iter(world.deks)))


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
