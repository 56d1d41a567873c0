"""A session keyring needs the token *and* the server key; expired sessions are gone
(SECURITY-MODEL key hierarchy 10, "Sessions"; issue 11, finding 4).

The attacks, as they were found: a copy of every row of the database plus a captured live
token opened that session's keyring (the physician role key among it) offline, because its key
was derived from the token alone; and an expired console session, still stored, opened the same
way with its old cookie. Now the keyring's key mixes the session-keyring server key (never in
the database), expired rows are deleted, and a keyring sealed the old way is a signed-out
session: 401 for the API, the sign-in page for the console, never a 500.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from sqlalchemy import select

from access_control import crypto
from access_control.keyring import Keyring, open_keyring
from access_control.roles import Role
from medchat.models import AuthToken, KeyRole
from medchat.services.token_purge import ACTION, TokenPurge
from tests.support.accounts import bearer, code_for, init_role_keys, make_member, make_staff
from tests.support.audit import audit_entries
from tests.support.console import console_login, csrf_from, post_form
from tests.support.retention import every_stored_value
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql

OLD_INFO = b"medchat/session-keyring/v1"
OLD_LABEL = "medchat/session-keyring/v1"
NEW_INFO = b"medchat/session-keyring/v2"
NEW_LABEL = "medchat/session-keyring/v2"
COOKIE = "medchat-console"


@pytest.fixture
def clinician(runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    init_role_keys(runtime, clinician, make_staff(runtime, Role.COMPLIANCE))
    return clinician


def stolen_rows(runtime) -> list[dict]:
    """A copy of every row of ``auth_tokens``, read with SQL as a thief's dump holds them."""
    with runtime.database.engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(select(AuthToken.__table__))]


def token_only_opens(sealed: bytes, token: str, row_id: uuid.UUID, account_id: uuid.UUID) -> bool:
    """Every key a thief who knows the code derives from the token alone (HKDF with no server
    key, either format's label, with or without the format byte): does one open ``sealed``?"""
    for info in (OLD_INFO, NEW_INFO):
        key = crypto.hkdf_sha256(token.encode(), salt=b"", info=info, length=32)
        for label in (OLD_LABEL, NEW_LABEL):
            aad = crypto.associated_data(label, row_id, account_id)
            for blob in (sealed, sealed[1:]):
                try:
                    crypto.open_sealed(key, blob, aad)
                except crypto.DecryptionFailed:
                    continue
                return True
    return False


def sealed_the_old_way(keyring: Keyring, token: str, row_id: uuid.UUID) -> bytes:
    """A keyring as the code before this change stored it (format 1, token-only key)."""
    key = crypto.hkdf_sha256(token.encode(), salt=b"", info=OLD_INFO, length=32)
    aad = crypto.associated_data(OLD_LABEL, row_id, keyring.account_id)
    return crypto.seal(key, b"\x01" + keyring._serialise()[1:], aad)


def console_token(client) -> str:
    with client.session_transaction() as session:
        return session.get("console") or session["console_pending"]


def row_of(runtime, token: str) -> dict | None:
    digest = crypto.token_hash(token)
    return next((r for r in stolen_rows(runtime) if r["token_hash"] == digest), None)


def test_a_database_copy_and_a_live_token_open_no_keyring_without_the_server_key(
    runtime, clinician
):
    signed = sign_in(runtime, clinician)
    held = signed.principal.keyring.role_keys(KeyRole.PHYSICIAN)[0].key
    captured = {signed.tokens.access_token, signed.tokens.refresh_token}

    copy = [r for r in stolen_rows(runtime) if r["sealed_keys"] is not None]
    assert len(copy) == 2
    for row in copy:
        for token in captured:
            assert not token_only_opens(row["sealed_keys"], token, row["id"], row["account_id"])

    # With the server key the same copy and token open it: the test can fail.
    row = row_of(runtime, signed.tokens.access_token)
    opened = open_keyring(
        row["sealed_keys"],
        signed.tokens.access_token,
        row["id"],
        row["account_id"],
        runtime.keys.session_keyring,
    )
    (physician,) = opened.role_keys(KeyRole.PHYSICIAN)
    assert physician.key.private_bytes_for_storage() == held.private_bytes_for_storage()


def test_an_expired_console_session_is_deleted_and_its_old_cookie_opens_nothing(
    app, client, runtime, clock, clinician
):
    console_login(client, runtime, clinician)
    token, cookie = console_token(client), client.get_cookie(COOKIE).value
    blob = row_of(runtime, token)["sealed_keys"]
    clock.advance(hours=9)  # past the absolute limit: expired, and still stored
    assert row_of(runtime, token) is not None

    assert TokenPurge(runtime).run().auth_tokens >= 1

    assert row_of(runtime, token) is None
    assert blob not in every_stored_value(runtime)  # in no copy of the tables
    for row in stolen_rows(runtime):
        if row["sealed_keys"] is not None:
            with pytest.raises(crypto.DecryptionFailed):
                open_keyring(
                    row["sealed_keys"],
                    token,
                    row["id"],
                    row["account_id"],
                    runtime.keys.session_keyring,
                )
    thief = app.test_client()
    thief.set_cookie(COOKIE, cookie)
    response = thief.get("/console/queue")
    assert response.status_code == 302
    assert "/console/login" in response.headers["Location"]


def test_signing_in_again_deletes_the_accounts_expired_sessions(app, runtime, clock, clinician):
    first = app.test_client()
    console_login(first, runtime, clinician)
    old = console_token(first)
    clock.advance(minutes=16)  # idle limit passed: expired, still stored
    assert row_of(runtime, old) is not None

    console_login(app.test_client(), runtime, clinician)

    assert row_of(runtime, old) is None
    entry = audit_entries(runtime, ACTION)[-1]  # (the first sign-in took the enrollment token)
    assert (entry.target_type, entry.target_id) == ("account", str(clinician.id))
    assert json.loads(entry.details)["auth_tokens"] == 1


def test_a_keyring_sealed_before_the_upgrade_answers_401_not_500(client, runtime, clinician):
    signed = sign_in(runtime, clinician)
    for token in (signed.tokens.access_token, signed.tokens.refresh_token):
        row = row_of(runtime, token)
        old = sealed_the_old_way(signed.principal.keyring, token, row["id"])
        execute_sql(
            runtime, "UPDATE auth_tokens SET sealed_keys = :s WHERE id = :id", s=old, id=row["id"]
        )
    headers = bearer({"access_token": signed.tokens.access_token})

    for response in (
        client.get("/api/v1/me", headers=headers),
        client.post(f"/api/v1/clinician/colleagues/{uuid.uuid4()}/grant", headers=headers),
        client.post("/api/v1/auth/refresh", json={"refresh_token": signed.tokens.refresh_token}),
    ):
        assert response.status_code == 401, response.get_json()
        assert response.get_json()["error"]["code"] == "invalid_token"

    assert TokenPurge(runtime).run().old_keyring_tokens == 2
    assert row_of(runtime, signed.tokens.access_token) is None


def test_a_console_session_sealed_before_the_upgrade_goes_back_to_sign_in(
    client, runtime, clock, clinician
):
    console_login(client, runtime, clinician)
    token = console_token(client)
    row = row_of(runtime, token)
    keyring = Keyring(clinician.id)
    old = sealed_the_old_way(keyring, token, row["id"])
    execute_sql(
        runtime, "UPDATE auth_tokens SET sealed_keys = :s WHERE id = :id", s=old, id=row["id"]
    )

    response = client.get("/console/queue")
    assert response.status_code == 302
    assert "/console/login?ended=1" in response.headers["Location"]


@pytest.mark.parametrize("blob", ["old format", "does not open", "carried runs gone"])
def test_a_pending_console_session_whose_keyring_does_not_open_goes_back_to_sign_in(
    client, runtime, clock, clinician, blob
):
    """A pending row holds no keyring now (``test_console_pending.py``): one planted in the
    old format, or carried scrypt runs altered or missing in the cookie, end the sign-in."""
    response = post_form(
        client, "/console/login", {"email": clinician.email, "password": clinician.password}
    )
    assert response.headers["Location"].endswith("/console/totp")
    csrf = csrf_from(client.get("/console/totp").get_data(as_text=True))
    token = console_token(client)
    row = row_of(runtime, token)
    if blob == "old format":
        sealed = sealed_the_old_way(Keyring(clinician.id), token, row["id"])
        execute_sql(
            runtime,
            "UPDATE auth_tokens SET sealed_keys = :s WHERE id = :id",
            s=sealed,
            id=row["id"],
        )
    with client.session_transaction() as session:
        carried = session["console_pending_runs"]
        if blob == "does not open":
            raw = bytearray(base64.urlsafe_b64decode(carried))
            raw[-1] ^= 1
            session["console_pending_runs"] = base64.urlsafe_b64encode(raw).decode()
        elif blob == "carried runs gone":
            del session["console_pending_runs"]
    clock.advance(seconds=30)

    code = code_for(clinician, runtime)
    response = client.post("/console/totp", data={"csrf_token": csrf, "code": code})
    assert response.status_code == 302
    assert "/console/login" in response.headers["Location"]
    assert client.get("/console/queue").status_code == 302


def test_a_member_signed_in_before_the_upgrade_signs_in_again(client, runtime):
    """The one-time sign-out an upgrade brings: the next sign-in works as always."""
    member = make_member(runtime)
    signed = sign_in(runtime, member)
    row = row_of(runtime, signed.tokens.access_token)
    old = sealed_the_old_way(signed.principal.keyring, signed.tokens.access_token, row["id"])
    execute_sql(
        runtime, "UPDATE auth_tokens SET sealed_keys = :s WHERE id = :id", s=old, id=row["id"]
    )
    assert (
        client.get(
            "/api/v1/me", headers=bearer({"access_token": signed.tokens.access_token})
        ).status_code
        == 401
    )

    again = sign_in(runtime, member)
    response = client.get("/api/v1/me", headers=bearer({"access_token": again.tokens.access_token}))
    assert response.status_code == 200
    assert row_of(runtime, signed.tokens.access_token) is None  # taken by the sign-in
