"""What a finished rotation reports and records: the result handed to ``medchat keys rotate``,
the ``role_key.retire`` audit entry, and the times on the rows it closes. The rotation's
behaviour (who reads what, resuming, the sweep) is in tests/unit/services/test_rotation.py."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from medchat.keys.rotation import RotationResult
from medchat.models import AuditEntry, RoleKey, RoleKeyRotation, RoleKeyStatus
from tests.support.rotation import physician_keys, revoke, rotate, rotation_world


@pytest.fixture
def world(runtime):
    return rotation_world(runtime, conversations=3, members=1)


def retire_entries(runtime) -> list[tuple[str | None, str | None, dict]]:
    with runtime.database.transaction() as session:
        entries = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "role_key.retire")
            .order_by(AuditEntry.seq)
        )
        return [(e.target_type, e.target_id, json.loads(e.details)) for e in entries]


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
    assert retire_entries(runtime) == [
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
    [(_, _, details)] = retire_entries(runtime)
    assert details["successors_retired"] == [2]
    assert {v: row.status for v, row in physician_keys(runtime).items()} == {
        1: RoleKeyStatus.RETIRED,
        2: RoleKeyStatus.RETIRED,
        3: RoleKeyStatus.ACTIVE,
    }
