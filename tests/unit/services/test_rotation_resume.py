"""A role-key rotation that stops and resumes: real database, real crypto.

A rotation is many transactions (prepare, grant, activate, re-seal in batches, retire), so a
run can stop between any two: killed before the grants, stopped after a few batches, refused
at the activation while the new key is not pinned (the pins, SECURITY-MODEL 9, are what keep a
planted key out), or blocked by a wrap that does not open. A stop costs no holder a
conversation (half-way, every one still opens for a holder signed in now; a wrap that does not
open keeps the old key), and the next run, by the starter or another holder, goes on from its
cursor or starts over with a key of its own. Whole runs read back by holders are in
tests/unit/services/test_rotation.py.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from medchat.keys.rotation import PinRequired, RotationBlocked, RotationService
from medchat.models import ConversationKeyWrap, KeyRole, RoleKeyRotation
from tests.support.conversations import start_conversation
from tests.support.rotation import (
    audit_details,
    open_as,
    physician_keys,
    readable_by,
    rotate,
    rotation_world,
    statuses,
    wraps_sealed_to,
)
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql


@pytest.fixture
def world(runtime):
    return rotation_world(runtime, conversations=12, members=3)


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
