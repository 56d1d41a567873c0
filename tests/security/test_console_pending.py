"""The console opens no key before the second factor (issue 18 item 6; SECURITY-MODEL key
hierarchy 5, "at login (after 2FA where required) the server opens the personal and role
private keys").

Before: the password step opened the clinician's keyring (personal key, physician role key)
and stored it sealed in the *pending* session row, so a password alone put key material in the
database before any code was asked. Now the password step only does the scrypt work and
carries its result sealed to the pending token and the session-keyring server key, in the
client's cookie; the keys are opened at the TOTP step.

- after the password step no row written holds key material: the pending row has no keyring,
  and nothing else but the audit trail changed;
- a stolen pending cookie plus a copy of the database opens nothing: no row to open, and the
  carried runs need the server key (with it, they open: so the failures are the key's);
  carried runs moved to another pending session, or replayed after sign-in, are refused;
- a wrong code opens nothing either; the full sign-in still yields the keyring, physician key
  included.
"""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import inspect, select, text

from access_control import crypto, keyring
from access_control.keyring import open_keyring
from access_control.roles import Role
from medchat.identity import console_sessions
from medchat.models import AuthToken, KeyRole, PersonalKey, TokenKind
from tests.support.accounts import code_for, init_role_keys, make_staff
from tests.support.console import console_login, post_form
from tests.support.legacy_passwords import as_before

COOKIE = "medchat-console"


@pytest.fixture
def clinician(runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    init_role_keys(runtime, clinician, make_staff(runtime, Role.COMPLIANCE))
    return clinician


def snapshot(runtime) -> dict[str, set[tuple]]:
    """Every row of every table, as a database copy holds them."""
    rows: dict[str, set[tuple]] = {}
    with runtime.database.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            result = connection.execute(text(f'SELECT * FROM "{table}"'))
            rows[table] = {
                tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in result
            }
    return rows


def token_rows(runtime, account_id) -> list[dict]:
    """The account's ``auth_tokens`` rows, read with SQL as a copy holds them."""
    table = AuthToken.__table__
    with runtime.database.engine.connect() as connection:
        return [
            dict(row._mapping)
            for row in connection.execute(select(table).where(table.c.account_id == account_id))
        ]


def password_step(client, clinician) -> tuple[str, str]:
    response = post_form(
        client, "/console/login", {"email": clinician.email, "password": clinician.password}
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/totp")
    with client.session_transaction() as session:
        return session["console_pending"], session.get("console_pending_runs", "")


def test_the_password_step_stores_no_key_material(client, runtime, clinician):
    before = snapshot(runtime)
    password_step(client, clinician)
    after = snapshot(runtime)
    # Rows written: the pending session and the audit trail (the sign-in deletes the
    # account's spent tokens, which is all that changes elsewhere).
    written = {table for table in after if after[table] - before.get(table, set())}
    assert written <= {"auth_tokens", "audit_entries", "chain_heads"}, written
    (pending,) = token_rows(runtime, clinician.id)
    assert pending["kind"] == TokenKind.CONSOLE_PENDING
    assert pending["sealed_keys"] is None
    # A wrong code opens nothing either.
    runtime.clock.advance(seconds=30)
    assert post_form(client, "/console/totp", {"code": "000000"}).status_code == 401
    assert [row["sealed_keys"] for row in token_rows(runtime, clinician.id)] == [None]


def test_a_stolen_pending_cookie_and_a_database_copy_open_nothing(app, client, runtime, clinician):
    token, carried = password_step(client, clinician)
    (row,) = token_rows(runtime, clinician.id)
    assert row["sealed_keys"] is None  # nothing in the copy to open with the cookie
    sealed = base64.urlsafe_b64decode(carried)
    aad = crypto.associated_data(console_sessions._CARRY_AAD, row["id"], clinician.id)
    directory = runtime.keys.directory
    others = {path.name: path.read_bytes() for path in directory.glob("*.key")}
    others.pop("session-keyring.key")
    others["no server key"] = bytes(32)
    for name, key in others.items():
        with pytest.raises(crypto.DecryptionFailed):
            crypto.open_sealed(
                keyring.derive_token_key(token, key, console_sessions._CARRY_INFO), sealed, aad
            )
            pytest.fail(f"the pending cookie opened with {name}")
    # With the session-keyring key it opens (scrypt runs, no key): the failures are the key's.
    crypto.open_sealed(
        keyring.derive_token_key(token, runtime.keys.session_keyring, console_sessions._CARRY_INFO),
        sealed,
        aad,
    )

    # Carried runs moved to another pending session are refused: back to the sign-in page.
    other = app.test_client()
    password_step(other, clinician)
    with other.session_transaction() as session:
        session["console_pending_runs"] = carried
    runtime.clock.advance(seconds=30)
    moved = post_form(other, "/console/totp", {"code": code_for(clinician, runtime)})
    assert moved.status_code == 302 and "/console/login" in moved.headers["Location"]


def test_the_full_sign_in_still_opens_the_keyring(app, client, runtime, clinician):
    console_login(client, runtime, clinician)
    with client.session_transaction() as session:
        token = session["console"]
    (row,) = token_rows(runtime, clinician.id)
    assert row["kind"] == TokenKind.CONSOLE
    opened = open_keyring(
        row["sealed_keys"], token, row["id"], clinician.id, runtime.keys.session_keyring
    )
    assert opened.personal is not None and opened.holds_role(KeyRole.PHYSICIAN)
    assert client.get("/console/queue").status_code == 200


def test_a_clinician_from_before_signs_in_and_is_upgraded_after_the_code(
    client, runtime, clinician
):
    """An old hash and an old sealed key: the password step replaces the hash and carries two
    scrypt runs (the new hash's and the old key's); the key is re-sealed only after the code."""
    as_before(runtime, clinician)
    password_step(client, clinician)
    key_before = stolen_key(runtime, clinician.id)
    assert key_before[0] == 1  # not touched before the second factor
    runtime.clock.advance(seconds=30)
    response = post_form(client, "/console/totp", {"code": code_for(clinician, runtime)})
    assert response.status_code == 302 and response.headers["Location"].endswith("/queue")
    assert stolen_key(runtime, clinician.id)[0] == 2
    assert client.get("/console/queue").status_code == 200


def stolen_key(runtime, account_id) -> bytes:
    table = PersonalKey.__table__
    with runtime.database.engine.connect() as connection:
        return bytes(
            connection.execute(
                select(table.c.private_key_ciphertext).where(
                    table.c.account_id == account_id, table.c.retired_at.is_(None)
                )
            ).scalar_one()
        )
