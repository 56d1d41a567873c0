"""The steps of a rotation one by one (``medchat.keys.rotation``, ``rotation_state``): the
activation's record and its locks, each refusal with its words, and what counts as a wrap
still left on a key. Whole runs read back by holders are in tests/unit/services/test_rotation.py.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from medchat import audit
from medchat.errors import Conflict, KeyIntegrityFailure, RoleKeyRequired
from medchat.keys import rotation_wraps
from medchat.keys.rotation import RotationBlocked, RotationService
from medchat.keys.rotation_state import locked_rotation, remaining_wraps
from medchat.keys.rotation_wraps import WrapResealer
from medchat.models import (
    ConversationKeyWrap,
    Holder,
    KeyRole,
    RoleKey,
    RoleKeyGrant,
    RoleKeyRotation,
    RoleKeyStatus,
)
from medchat.services.audit_log import AuditLogService
from tests.support.audit import audit_entries, audit_records
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
    """One physician holder, the compliance officer, a member and two conversations."""
    return rotation_world(runtime, conversations=2, members=1, colleague=False)


@pytest.fixture
def with_colleague(runtime):
    """The same with a second physician holder, granted the key."""
    return rotation_world(runtime, conversations=2, members=1)


def after(monkeypatch, step: str, then) -> None:
    """Run ``then(runtime)`` once, right after the rotation's ``step`` committed."""
    original = getattr(RotationService, step)

    def step_then(service, *args):
        monkeypatch.setattr(RotationService, step, original)
        result = original(service, *args)
        then(service.runtime)
        return result

    monkeypatch.setattr(RotationService, step, step_then)


def test_the_activation_is_recorded_with_both_versions_and_the_new_fingerprint(runtime, world):
    rotate(runtime, world.clinician)
    new = physician_keys(runtime)[2]
    assert audit_records(runtime, "role_key.activate") == [
        (
            "role_key",
            str(new.id),
            {
                "role": "physician",
                "version": 2,
                "retiring_version": 1,
                "fingerprint": new.fingerprint,
            },
        )
    ]
    assert new.activated_at == runtime.clock.now()


def test_the_activation_takes_the_grant_lock_then_the_sealing_lock_both_exclusive(
    runtime, world, monkeypatch
):
    taken = locks_taken_in(monkeypatch, "_activate")
    rotate(runtime, world.clinician)
    assert taken == [
        ("role-key-grants", "physician", True),
        ("role-key-sealing", "physician", True),
    ]


def test_a_rotation_another_run_finished_meanwhile_is_refused_by_name(runtime, world, monkeypatch):
    def finish_it(runtime):
        with runtime.database.transaction() as session:
            for rotation in session.scalars(select(RoleKeyRotation)):
                rotation.finished_at = runtime.clock.now()

    after(monkeypatch, "_grant_holders", finish_it)
    with pytest.raises(Conflict) as refused:
        rotate(runtime, world.clinician)
    assert (
        refused.value.message == "the physician rotation was finished or abandoned by another run"
    )
    assert physician_keys(runtime)[1].status == RoleKeyStatus.ACTIVE


def test_keys_changed_under_the_rotation_stop_its_activation(runtime, world, monkeypatch):
    def retire_the_old_key(runtime):
        with runtime.database.transaction() as session:
            old = session.scalars(
                select(RoleKey).where(RoleKey.role == KeyRole.PHYSICIAN, RoleKey.version == 1)
            ).one()
            old.status = RoleKeyStatus.RETIRING

    after(monkeypatch, "_grant_holders", retire_the_old_key)
    with pytest.raises(Conflict) as refused:
        rotate(runtime, world.clinician)
    assert refused.value.message == "the physician keys changed during the rotation; run it again"
    assert physician_keys(runtime)[2].status == RoleKeyStatus.PENDING
    assert audit_records(runtime, "role_key.activate") == []


def test_an_unknown_rotation_is_refused_as_finished_or_abandoned(runtime):
    with runtime.database.transaction() as session, pytest.raises(Conflict) as refused:
        locked_rotation(session, uuid.uuid4(), "archive")
    assert refused.value.message == "the archive rotation was finished or abandoned by another run"


def test_the_rotation_row_is_locked_until_the_step_commits(runtime, world):
    if not runtime.database.is_postgresql:
        pytest.skip("row locks are PostgreSQL's (SQLite takes the write lock at BEGIN)")
    rotate(runtime, world.clinician, prepare_only=True)
    with runtime.database.transaction() as session:
        rotation_id = session.scalars(select(RoleKeyRotation.id)).one()
    with runtime.database.transaction() as holding:
        locked_rotation(holding, rotation_id, "physician")
        with runtime.database.engine.connect() as other:
            other.execute(text("SET lock_timeout = '50ms'"))
            with pytest.raises(OperationalError, match="lock timeout"):
                other.execute(
                    text("SELECT id FROM role_key_rotations WHERE id = :id FOR UPDATE"),
                    {"id": rotation_id},
                )
            other.rollback()
            # A plain read does not wait.
            assert (
                other.execute(
                    text("SELECT count(*) FROM role_key_rotations WHERE id = :id"),
                    {"id": rotation_id},
                ).scalar_one()
                == 1
            )


def test_wraps_left_on_a_key_are_the_holders_own_gated_or_not(runtime, world):
    old = physician_keys(runtime)[1]
    with runtime.database.transaction() as session:
        wraps = list(
            session.scalars(
                select(ConversationKeyWrap).where(ConversationKeyWrap.holder == Holder.PHYSICIAN)
            )
        )
        assert len(wraps) == 2
        assert remaining_wraps(session, "physician", old.key_id) == 2
        # A wrap of another holder naming the same key id is not the physician's to re-seal.
        session.add(
            ConversationKeyWrap(
                conversation_id=wraps[0].conversation_id,
                epoch=2,
                holder=Holder.MEMBER,
                recipient_key_id=old.key_id,
                wrap=wraps[0].wrap,
                created_at=runtime.clock.now(),
            )
        )
        session.flush()
        assert remaining_wraps(session, "physician", old.key_id) == 2
        assert remaining_wraps(session, "physician", b"\x00" * len(old.key_id)) == 0
        left_out = {wraps[0].conversation_id}
        assert remaining_wraps(session, "physician", old.key_id, excluding=left_out) == 1
        assert remaining_wraps(session, "physician", old.key_id, excluding=set()) == 2
        session.rollback()


def test_archive_wraps_left_on_a_key_count_gated_ones(runtime, world):
    with runtime.database.transaction() as session:
        archive = runtime.custody(session).role_keys(KeyRole.ARCHIVE)[0]
        # The conversations are live: their archive wraps are stored gated.
        gated = session.scalars(
            select(ConversationKeyWrap.holder).where(
                ConversationKeyWrap.recipient_key_id == archive.key_id
            )
        ).all()
        assert gated and Holder.ARCHIVE not in gated
        assert remaining_wraps(session, "archive", archive.key_id) == len(gated) == 2


def test_the_grant_step_seals_the_new_key_to_each_holder_lacking_it_and_records_them(
    runtime, with_colleague, monkeypatch
):
    taken = locks_taken_in(monkeypatch, "_grant_holders")
    result = rotate(runtime, with_colleague.clinician, prepare_only=True)
    assert (result.activated, result.retired) == (False, False)
    assert taken == [("role-key-grants", "physician", True)]
    new = physician_keys(runtime)[2]
    assert result.grants == 2  # the starter's, sealed as it started, and the colleague's
    assert audit_records(runtime, "role_key.rotation_grant") == [
        (
            "role_key",
            str(new.id),
            {"role": "physician", "version": 2, "holders": [str(with_colleague.colleague.id)]},
        )
    ]
    with runtime.database.transaction() as session:
        granted_by = dict(
            session.execute(
                select(RoleKeyGrant.account_id, RoleKeyGrant.granted_by).where(
                    RoleKeyGrant.role_key_id == new.id
                )
            ).all()
        )
    starter = with_colleague.clinician.id
    assert granted_by == {starter: starter, with_colleague.colleague.id: starter}


def test_a_new_key_unpinned_before_its_grants_is_sealed_to_nobody_else(
    runtime, with_colleague, monkeypatch
):
    def unpin_the_new_key(runtime):
        runtime.pins.retire(KeyRole.PHYSICIAN, [physician_keys(runtime)[2].fingerprint])

    after(monkeypatch, "_start", unpin_the_new_key)
    with pytest.raises(KeyIntegrityFailure):
        rotate(runtime, with_colleague.clinician)
    new = physician_keys(runtime)[2]
    with runtime.database.transaction() as session:
        assert runtime.custody(session).holders(new.id) == [with_colleague.clinician.id]
    assert audit_records(runtime, "role_key.rotation_grant") == []


def test_a_sign_in_without_a_copy_of_an_earlier_successor_cannot_rotate(runtime, with_colleague):
    before_the_loss = sign_in(runtime, with_colleague.clinician).principal
    revoke(
        runtime, with_colleague.clinician, with_colleague.colleague
    )  # a loss: successor version 2
    service = RotationService(runtime, before_the_loss, KeyRole.PHYSICIAN)
    with pytest.raises(RoleKeyRequired) as refused:
        service.run()
    assert refused.value.message == (
        "this physician rotation also retires successor v2, and your sign-in holds no copy "
        "of it; let a holder who has it run it"
    )
    assert {v: k.status for v, k in physician_keys(runtime).items()}[1] == RoleKeyStatus.ACTIVE


def rotation_entries(runtime):
    """The ``role_key.*`` entries from the rotation's start on (the world's come before)."""
    entries = audit_entries(runtime, prefix="role_key.")
    start = [e.action for e in entries].index("role_key.rotation_start")
    return entries[start:]


def test_a_batch_is_at_least_one_wrap(runtime, world):
    actor = sign_in(runtime, world.clinician).principal
    with pytest.raises(ValueError) as refused:
        RotationService(runtime, actor, KeyRole.PHYSICIAN, batch_size=0)
    assert str(refused.value) == "batch_size must be at least 1"
    result = RotationService(runtime, actor, KeyRole.PHYSICIAN, batch_size=1).run()
    assert (result.resealed, result.retired) == (2, True)


def test_each_step_is_recorded_as_the_one_running_it_from_the_command_line(runtime, world):
    rotate(runtime, world.clinician)
    entries = rotation_entries(runtime)
    assert {e.action for e in entries} >= {"role_key.activate", "role_key.retire"}
    with runtime.database.transaction() as session:
        service = AuditLogService(session, runtime)
        assert {service.shown(session.merge(e))["address"] for e in entries} == {"cli"}
    assert {(e.actor_id, e.actor_role) for e in entries} == {(world.clinician.id, "clinician")}
    assert all(e.address_sealed is not None for e in entries)  # "cli"


def test_a_rotation_given_its_callers_audit_context_records_that(runtime, world):
    actor = sign_in(runtime, world.clinician).principal
    context = audit.AuditContext(actor_id=actor.id, actor_role="clinician", address=None)
    RotationService(runtime, actor, KeyRole.PHYSICIAN, audit_context=context).run()
    entries = rotation_entries(runtime)
    assert entries and all(e.address_sealed is None for e in entries)


def test_a_resumed_run_past_the_old_keys_wraps_goes_on_to_the_successors(
    runtime, with_colleague, monkeypatch
):
    """(``run__mutmut_20``: ``continue`` made ``break``)"""
    revoke(
        runtime, with_colleague.clinician, with_colleague.colleague
    )  # a loss: successor version 2
    member = sign_in(runtime, with_colleague.members[0]).principal
    start_conversation(runtime, member, subject=None, bodies=["after the loss"])
    successor = physician_keys(runtime)[2]
    assert wraps_sealed_to(runtime, successor) == 1
    run = WrapResealer.run

    def stopped_at_the_successor(resealer, max_batches=None):
        if resealer.old.id == successor.id:
            monkeypatch.setattr(WrapResealer, "run", run)
            return False  # the first run stops here, the old key's wraps all re-sealed
        return run(resealer, max_batches)

    monkeypatch.setattr(WrapResealer, "run", stopped_at_the_successor)
    first = rotate(runtime, with_colleague.clinician)
    assert (first.activated, first.retired) == (True, False)
    assert wraps_sealed_to(runtime, physician_keys(runtime)[1]) == 0

    second = rotate(runtime, with_colleague.clinician)
    assert second.retired
    assert wraps_sealed_to(runtime, successor) == 0


def test_a_wrap_no_pass_reaches_stops_the_run_instead_of_spinning(runtime, world, monkeypatch):
    """Whatever the cause (here one wrap counted that no batch finds), a whole pass that moves
    nothing ends the run: the old key stays, and a run that loops forever is impossible."""
    counted = rotation_wraps.remaining_wraps

    def one_more(session, holder, key_id, **options):
        return counted(session, holder, key_id, **options) + 1

    monkeypatch.setattr(rotation_wraps, "remaining_wraps", one_more)
    with pytest.raises(RotationBlocked) as refused:
        rotate(runtime, world.clinician)
    assert refused.value.message == (
        "1 physician wraps still name the old key and a whole pass moved none of them; "
        "the old key stays"
    )
    assert physician_keys(runtime)[1].status == RoleKeyStatus.RETIRING
    monkeypatch.setattr(rotation_wraps, "remaining_wraps", counted)
    assert rotate(runtime, world.clinician).retired  # the next run finishes it


def test_progress_is_told_after_each_batch_and_a_stopped_run_reports_it(runtime, world):
    told: list[tuple[int, int]] = []
    stopped = rotate(
        runtime,
        world.clinician,
        batch_size=1,
        max_batches=1,
        progress=lambda done, total: told.append((done, total)),
    )
    assert (stopped.activated, stopped.retired, stopped.resealed) == (True, False, 1)
    assert told == [(1, 2)]
    assert physician_keys(runtime)[1].status == RoleKeyStatus.RETIRING


def test_a_retired_key_leaves_the_pin_file_and_the_new_one_stays(runtime, world):
    old = physician_keys(runtime)[1]
    rotate(runtime, world.clinician)
    new = physician_keys(runtime)[2]
    assert runtime.pins.current()["physician"] == {new.fingerprint}
    assert old.fingerprint not in runtime.pins.current()["physician"]
