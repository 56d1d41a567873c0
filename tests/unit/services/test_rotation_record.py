"""What a finished rotation reports and records: the result handed to ``medchat keys rotate``,
the ``role_key.retire`` audit entry, and the times on the rows it closes. The rotation's
behaviour is in tests/unit/services/: who reads what in test_rotation.py, resuming in
test_rotation_resume.py, the sweep in test_rotation_concurrency.py."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from medchat.errors import Conflict
from medchat.keys.rotation import RotationResult, RotationService
from medchat.models import (
    Conversation,
    ConversationKeyWrap,
    Holder,
    RoleKey,
    RoleKeyRotation,
    RoleKeyStatus,
)
from tests.support.audit import audit_records
from tests.support.conversations import start_conversation
from tests.support.rotation import (
    locks_taken_in,
    physician_keys,
    revoke,
    rotate,
    rotation_world,
    wraps_sealed_to,
)
from tests.support.sessions import sign_in


@pytest.fixture
def world(runtime):
    return rotation_world(runtime, conversations=3, members=1)


def test_a_rotation_reports_and_records_what_it_did(runtime, world):
    old = physician_keys(runtime)[1]
    result = rotate(runtime, world.clinician)
    new = physician_keys(runtime)[2]

    assert result == RotationResult(
        role="physician",
        from_version=1,
        to_version=2,
        fingerprint=new.fingerprint,
        resealed=3,
        grants=2,  # the one running it and the colleague
        activated=True,
        retired=True,
        unpin=None,  # the pin file is the service's to edit
    )
    assert audit_records(runtime, "role_key.retire") == [
        (
            "role_key",
            str(old.id),
            {
                "role": "physician",
                "version": 1,
                "grants_removed": 2,
                "resealed": 3,
                "successors_retired": [],
            },
        )
    ]
    now = runtime.clock.now()
    with runtime.database.transaction() as session:
        retired = session.get(RoleKey, old.id)
        assert retired is not None
        assert (retired.status, retired.retired_at) == (RoleKeyStatus.RETIRED, now)
        [rotation] = session.scalars(select(RoleKeyRotation)).all()
        assert (rotation.finished_at, rotation.cursor) == (now, None)


def test_the_successors_made_before_a_rotation_retire_with_the_old_key(runtime, world):
    revoke(runtime, world.clinician, world.colleague)  # a loss: successor version 2
    result = rotate(runtime, world.clinician)

    assert (result.from_version, result.to_version, result.retired) == (1, 3, True)
    [(_, _, details)] = audit_records(runtime, "role_key.retire")
    assert details["successors_retired"] == [2]
    assert {v: row.status for v, row in physician_keys(runtime).items()} == {
        1: RoleKeyStatus.RETIRED,
        2: RoleKeyStatus.RETIRED,
        3: RoleKeyStatus.ACTIVE,
    }


def seal_a_conversation_to(runtime, world, key) -> None:
    """What a host that read ``key`` as active a moment too long does: a new conversation
    whose physician wrap is sealed to it."""
    member = sign_in(runtime, world.members[0]).principal
    started = start_conversation(runtime, member, subject=None, bodies=["late"])
    with runtime.database.transaction() as session:
        conversation = session.get(Conversation, started.id)
        session.execute(
            delete(ConversationKeyWrap).where(
                ConversationKeyWrap.conversation_id == started.id,
                ConversationKeyWrap.holder == Holder.PHYSICIAN,
            )
        )
        keys = runtime.conversation_keys(session)
        keys.add_wrap(
            conversation,
            started.dek,
            Holder.PHYSICIAN,
            key.id,
            key.public_key,
            key.key_id,
            conversation.created_at,
        )


def test_a_wrap_to_the_old_key_arriving_after_the_sweep_stops_the_retirement(
    runtime, world, monkeypatch
):
    old = physician_keys(runtime)[1]
    retire = RotationService._retire

    def after_a_late_seal(service, plan, successors):
        monkeypatch.setattr(RotationService, "_retire", retire)  # once
        seal_a_conversation_to(runtime, world, old)
        return retire(service, plan, successors)

    monkeypatch.setattr(RotationService, "_retire", after_a_late_seal)
    with pytest.raises(Conflict) as refused:
        rotate(runtime, world.clinician)
    assert refused.value.message == "physician wraps appeared during the sweep; run it again"
    assert physician_keys(runtime)[1].status != RoleKeyStatus.RETIRED
    assert audit_records(runtime, "role_key.retire") == []

    assert rotate(runtime, world.clinician).retired  # the next run sweeps it and retires
    assert wraps_sealed_to(runtime, old) == 0


def test_the_retirement_holds_the_roles_grant_lock(runtime, world, monkeypatch):
    taken = locks_taken_in(monkeypatch, "_retire")
    assert rotate(runtime, world.clinician).retired
    # Its own, then the one of the grants it makes to holders the old key gained meanwhile.
    assert taken == [("role-key-grants", "physician", True)] * 2
