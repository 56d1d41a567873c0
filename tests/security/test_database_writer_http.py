"""A planted key is refused over HTTP as the contract says: 409 ``key_integrity_failed``.

The substitutions of ``test_database_writer.py`` and ``test_database_writer_role_keys.py``
(a newcomer's personal key swapped before a grant, a grant of the attacker's own role key, a
conversation wrap forged to a DEK of the attacker's choice, a member's key swapped) reach the
API as one JSON error and nothing more: no trace, no detail, no session issued, nothing added
and nothing sealed to the attacker's key.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from access_control import crypto, hybrid_kem
from access_control.roles import Role
from medchat.keys.wrap_binding import wrap_purpose
from medchat.models import Holder, KeyRole, Message
from medchat.services.context import ServiceContext
from tests.support.accounts import bearer, code_for, login, make_staff
from tests.support.planted_keys import (
    SWAP_PERSONAL_KEY,
    World,
    active_role_key,
    conversation_count,
    grants_of,
    key_holders,
    personal_key_row,
    plant_grant,
    session_count,
)
from tests.support.tampering import execute_sql, retag_everything, sealed_to


@pytest.fixture
def world(runtime: ServiceContext) -> World:
    return key_holders(runtime)


def assert_key_integrity_failed(response) -> None:
    """409 with the contract's JSON error and nothing more (no trace, no detail)."""
    assert response.status_code == 409
    assert response.is_json
    assert response.get_json() == {
        "error": {
            "code": "key_integrity_failed",
            "message": response.get_json()["error"]["message"],
        }
    }
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text


def test_refusals_over_http_are_key_integrity_failed_json(client, runtime, world):
    holder = bearer(login(client, runtime, world.clinician))
    newcomer = make_staff(runtime, Role.CLINICIAN)
    attacker = hybrid_kem.generate_kem_keypair()
    execute_sql(
        runtime,
        SWAP_PERSONAL_KEY,
        public_key=attacker.public_key_bytes,
        key_id=attacker.key_id,
        account_id=newcomer.id,
    )
    response = client.post(f"/api/v1/clinician/colleagues/{newcomer.id}/grant", headers=holder)
    assert_key_integrity_failed(response)
    assert grants_of(runtime, newcomer.id) == []

    intruder = make_staff(runtime, Role.CLINICIAN)
    physician = active_role_key(runtime, KeyRole.PHYSICIAN)
    own = personal_key_row(runtime, intruder.id)
    fake_role_key = hybrid_kem.generate_kem_keypair()
    wrap = hybrid_kem.wrap_key(
        own.public_key,
        fake_role_key.private_bytes_for_storage(),
        recipient_id=intruder.id,
        context_id=physician.id,
        purpose=hybrid_kem.PURPOSE_ROLE_KEY,
    )
    plant_grant(runtime, physician.id, intruder.id, wrap)
    retag_everything(runtime)  # behind the row tag (see test_planted_rows), the pins refuse
    runtime.clock.advance(seconds=30)
    response = client.post(
        "/api/v1/auth/token",
        json={
            "email": intruder.email,
            "password": intruder.password,
            "totp_code": code_for(intruder, runtime),
        },
    )
    assert_key_integrity_failed(response)
    assert session_count(runtime, intruder.id) == 0


def _has_route(app, rule: str) -> bool:
    return any(r.rule == rule for r in app.url_map.iter_rules())


def test_conversation_refusals_over_http_are_key_integrity_failed_json(app, client, runtime, world):
    if not _has_route(app, "/api/v1/conversations/<uuid:conversation_id>/messages"):
        pytest.skip("the conversation API is not part of this build")
    member = bearer(login(client, runtime, world.member))
    assert (
        client.put(
            "/api/v1/me/consent",
            json={"health_messaging": True, "version": "2026-01"},
            headers=member,
        ).status_code
        == 200
    )
    created = client.post(
        "/api/v1/conversations",
        json={"body": "question", "emergency_notice": "2026-12"},
        headers=member,
    )
    assert created.status_code == 201, created.get_json()
    conversation_id = created.get_json()["id"]
    messages = f"/api/v1/conversations/{conversation_id}/messages"
    assert client.get(messages, headers=member).status_code == 200
    forged = hybrid_kem.wrap_key(
        personal_key_row(runtime, world.member.id).public_key,
        crypto.generate_key(),
        recipient_id=world.member.id,
        context_id=uuid.UUID(conversation_id),
        purpose=wrap_purpose(Holder.MEMBER),
    )
    execute_sql(
        runtime,
        "UPDATE conversation_key_wraps SET wrap = :wrap"
        " WHERE conversation_id = :conversation_id AND holder = 'member'",
        wrap=forged,
        conversation_id=uuid.UUID(conversation_id),
    )
    assert_key_integrity_failed(client.get(messages, headers=member))
    assert_key_integrity_failed(client.post(messages, json={"body": "more"}, headers=member))
    with runtime.database.transaction() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.conversation_id == uuid.UUID(conversation_id))
            )
            == 1
        )

    attacker = hybrid_kem.generate_kem_keypair()
    execute_sql(
        runtime,
        SWAP_PERSONAL_KEY,
        public_key=attacker.public_key_bytes,
        key_id=attacker.key_id,
        account_id=world.member.id,
    )
    assert_key_integrity_failed(
        client.post(
            "/api/v1/conversations",
            json={"body": "again", "emergency_notice": "2026-12"},
            headers=member,
        )
    )
    assert conversation_count(runtime, world.member.id) == 1
    assert sealed_to(runtime, attacker.key_id) == []
