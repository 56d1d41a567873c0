"""A planted rotation never gets its key pinned (issue 18, item 1).

Under ``MEDCHAT_ROLE_KEY_PINS`` the operator pins a rotation's new key by hand, from what
``medchat keys rotate`` prints. Three rows planted through SQL (a pending physician key holding
the attacker's public key, a rotation pointing to it, a grant sealing its seed to the
operator's own public key) once made the command resume that rotation and print the attacker's
fingerprint as the key to pin, word for word as a genuine run does; pinned, the next run made
it active and sealed every conversation key to it. Role keys and rotations now carry row tags,
so those rows are refused on load; and the prompt of a genuine run names the key, who started
the rotation and when, for the operator to confirm before pinning.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Uuid, bindparam, text

from access_control import hybrid_kem
from medchat.services.context import ServiceContext
from tests.support.accounts import Person, code_for
from tests.support.cli import cli_runner
from tests.support.rotation import (
    RotationWorld,
    audit_details,
    physician_keys,
    rotation_world,
    statuses,
)
from tests.support.tampering import execute_sql


@dataclass
class Pinned:
    """The care team's world, and an app of the same deployment pinning in its environment."""

    world: RotationWorld
    runtime: ServiceContext
    app: Flask

    def rotate(self, person: Person, *extra: str) -> Any:
        self.runtime.clock.advance(seconds=30)  # type: ignore[attr-defined]  # a fresh code
        answers = f"{person.password}\n{code_for(person, self.runtime)}\n"
        return cli_runner(self.app).invoke(
            args=["keys", "rotate", "--role", "physician", "--email", person.email, *extra],
            input=answers,
        )


@pytest.fixture
def pinned(make_app, runtime) -> Pinned:
    world = rotation_world(runtime, conversations=3, members=1)
    current = runtime.pins.current()
    pins = ",".join(f"{role}:{fp}" for role in ("physician", "archive") for fp in current[role])
    app = make_app(role_key_pins=pins)
    return Pinned(world, app.extensions["medchat"], app)


def stored_statuses(runtime: ServiceContext) -> dict[int, str]:
    """Physician key versions as stored, read without the models (a planted row is refused
    by them)."""
    with runtime.database.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT version, status FROM role_keys WHERE role = 'physician'")
        ).all()
    return {version: status for version, status in rows}


def operator_public_key(runtime: ServiceContext, person: Person) -> bytes:
    with runtime.database.transaction() as session:
        return runtime.custody(session).verified_personal_key(person.id).public_key


def plant_rotation(
    runtime: ServiceContext, operator: Person
) -> tuple[hybrid_kem.PrivateKeyHandle, uuid.UUID]:
    """The finding's three rows, as a database writer writes them (no row tags)."""
    attacker = hybrid_kem.generate_kem_keypair()
    genuine = physician_keys(runtime)[1]
    planted_key, now = uuid.uuid4(), runtime.clock.now()
    execute_sql(
        runtime,
        "INSERT INTO role_keys (id, role, version, key_id, public_key, fingerprint, status,"
        " created_at) VALUES (:id, 'physician', 2, :key_id, :public_key, :fingerprint,"
        " 'pending', :created_at)",
        id=planted_key,
        key_id=attacker.key_id,
        public_key=attacker.public_key_bytes,
        fingerprint=hybrid_kem.public_key_fingerprint(attacker.public_key_bytes),
        created_at=now,
    )
    execute_sql(
        runtime,
        "INSERT INTO role_key_rotations (id, role, from_key_id, to_key_id, started_by,"
        " started_at, resealed) VALUES (:id, 'physician', :from_key_id, :to_key_id,"
        " :started_by, :started_at, 0)",
        id=uuid.uuid4(),
        from_key_id=genuine.id,
        to_key_id=planted_key,
        started_by=operator.id,
        started_at=now,
    )
    execute_sql(
        runtime,
        "INSERT INTO role_key_grants (id, role_key_id, account_id, wrap, granted_by,"
        " created_at) VALUES (:id, :role_key_id, :account_id, :wrap, :granted_by, :created_at)",
        id=uuid.uuid4(),
        role_key_id=planted_key,
        account_id=operator.id,
        wrap=hybrid_kem.wrap_key(
            operator_public_key(runtime, operator),
            attacker.private_bytes_for_storage(),
            recipient_id=operator.id,
            context_id=planted_key,
            purpose=hybrid_kem.PURPOSE_ROLE_KEY,
        ),
        granted_by=operator.id,
        created_at=now,
    )
    return attacker, planted_key


def stored_count(runtime: ServiceContext, statement: str, **params: Any) -> int:
    typed = [bindparam(k, type_=Uuid()) for k, v in params.items() if isinstance(v, uuid.UUID)]
    with runtime.database.engine.connect() as connection:
        query = text(statement).bindparams(*typed)
        return connection.execute(query, params).scalar_one()  # type: ignore[no-any-return]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_a_planted_rotation_is_refused_and_its_key_is_never_offered_for_pinning(pinned, as_json):
    operator = pinned.world.clinician
    attacker, planted_key = plant_rotation(pinned.runtime, operator)
    fingerprint = hybrid_kem.public_key_fingerprint(attacker.public_key_bytes)

    result = pinned.rotate(operator, *(["--json"] if as_json else []))

    assert result.exit_code == 1
    output = result.stdout + result.stderr
    for shown in (fingerprint, fingerprint[:16], hybrid_kem.format_fingerprint(fingerprint)):
        assert shown not in output
    assert "pin_required" not in result.stdout
    reason = result.stderr.strip().splitlines()[-1]  # after the prompts
    assert reason.startswith("error: A stored record failed its integrity check")
    assert "written around the service" in reason and "pin no key" in reason
    # Nothing acted on the rows: no activation, nothing sealed to the attacker's key, and
    # the refusal is in the audit log.
    assert stored_statuses(pinned.runtime) == {1: "active", 2: "pending"}
    wraps = "SELECT count(*) FROM conversation_key_wraps WHERE recipient_key_id = :key_id"
    assert stored_count(pinned.runtime, wraps, key_id=attacker.key_id) == 0
    grants = "SELECT count(*) FROM role_key_grants WHERE role_key_id = :key"
    assert stored_count(pinned.runtime, grants, key=planted_key) == 1  # the planted one
    assert audit_details(pinned.runtime, "integrity.row_refused")


def test_the_pin_prompt_names_the_key_who_started_the_rotation_and_when(pinned):
    starter, colleague = pinned.world.clinician, pinned.world.colleague

    first = pinned.rotate(starter, "--json")

    assert first.exit_code == 1
    new = physician_keys(pinned.runtime)[2]
    request = json.loads(first.stdout)["pin_required"]
    assert request == {
        "role": "physician",
        "version": 2,
        "fingerprint": new.fingerprint,
        "pin": f"physician:{new.fingerprint}",
        "pin_in": "MEDCHAT_ROLE_KEY_PINS",
        "rotation_id": request["rotation_id"],
        "started_at": new.created_at.isoformat(),
        "started_by": {"id": str(starter.id), "name": f"Alice Martin <{starter.email}>"},
    }
    reason = first.stderr.strip().splitlines()[-1]
    assert str(starter.id) in reason and new.created_at.isoformat() in reason
    assert new.fingerprint in reason

    # Resumed by another holder, later: the prompt still names the starter and the start.
    again = pinned.rotate(colleague)

    assert again.exit_code == 1
    prompt = again.stdout
    assert f"rotation started by: Alice Martin <{starter.email}> (account {starter.id})" in prompt
    assert f"started at:          {new.created_at.isoformat()}" in prompt
    assert f"physician:{new.fingerprint} to MEDCHAT_ROLE_KEY_PINS" in prompt
    assert colleague.email not in prompt
    assert statuses(pinned.runtime) == {1: "active", 2: "pending"}
