"""A password guess against a database dump costs the scrypt work, whichever row it tests
(issue 18 item 5; SECURITY-MODEL "Authentication" and key hierarchy 3).

Before: ``accounts.password_hash`` was a bare bcrypt hash (cost 12, 4 KiB), so a guesser with
the dump tested passwords at bcrypt's price and skipped the 128 MiB of scrypt that guards the
personal key. Now bcrypt hashes an HKDF of an scrypt run whose salt and cost the hash stores,
and the personal key is sealed with the same run under another label, so signing in still
costs one scrypt and one bcrypt, and so does every offline guess.

- the dump's hash (read through SQL) does not confirm a guess with bcrypt alone, for members,
  clinicians and admins (who hold no key) alike; with the stored salt and cost run through
  scrypt, it does;
- signing in costs one scrypt run and one bcrypt operation for an unknown address, a wrong
  password and a right one, members and staff alike (counted, not timed);
- an account from before (a bare bcrypt hash, a version 1 sealed key) still signs in, and its
  first sign-in replaces both: from then on one scrypt run per sign-in.
"""

from __future__ import annotations

import base64

import bcrypt
import pytest
from sqlalchemy import select, text

from access_control import password_kdf, passwords
from access_control.password_kdf import ScryptParams
from access_control.roles import Role
from medchat.models import AuditEntry
from medchat.services.context import ServiceContext
from tests.support.accounts import Person, code_for, make_member, make_staff
from tests.support.legacy_passwords import as_before
from tests.support.password_work import count_password_work

TOKEN = "/api/v1/auth/token"


def _dumped(runtime: ServiceContext) -> dict[str, tuple[bytes, bytes | None]]:
    """Each account's hash and current sealed key, as a database copy holds them."""
    with runtime.database.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT a.id, a.password_hash, k.private_key_ciphertext FROM accounts a "
                "LEFT JOIN personal_keys k ON k.account_id = a.id AND k.retired_at IS NULL"
            )
        ).all()
    return {str(row[0]).replace("-", ""): (bytes(row[1]), row[2] and bytes(row[2])) for row in rows}


def _stored(hashed: bytes) -> tuple[ScryptParams, bytes, bytes]:
    assert hashed.startswith(b"$msb1$"), hashed[:10]
    cost, salt, rest = hashed[len(b"$msb1$") :].split(b"$", 2)
    fields = dict(part.split(b"=") for part in cost.split(b","))
    params = ScryptParams(log2_n=int(fields[b"ln"]), r=int(fields[b"r"]), p=int(fields[b"p"]))
    return params, base64.urlsafe_b64decode(salt + b"=="), b"$" + rest


def test_a_guess_against_a_dumped_hash_needs_the_scrypt_run(runtime):
    people = [
        make_member(runtime),
        make_staff(runtime, Role.CLINICIAN),
        make_staff(runtime, Role.ADMIN),
    ]
    dump = _dumped(runtime)
    for person in people:
        hashed, sealed = dump[person.id.hex]
        # bcrypt alone, over the password as the old hash took it: no confirmation.
        if hashed.startswith(b"$2"):
            pytest.fail(f"{person.role}: the stored hash is bcrypt alone")
        params, salt, bcrypt_hash = _stored(hashed)
        assert params == runtime.scrypt and bcrypt_hash.startswith(b"$2b$04$")
        assert not bcrypt.checkpw(person.password.encode(), bcrypt_hash)
        # The guess confirmed only through scrypt with the stored salt and cost.
        run = password_kdf.Password(person.password).stretched(salt, params)
        assert bcrypt.checkpw(passwords._bcrypt_input(run), bcrypt_hash)
        wrong = password_kdf.Password(person.password + "x").stretched(salt, params)
        assert not bcrypt.checkpw(passwords._bcrypt_input(wrong), bcrypt_hash)
        if person.role == Role.ADMIN:
            assert sealed is None  # no key, the same pre-hash
        else:
            # The key is sealed with the same run (one scrypt per sign-in, not two).
            assert sealed is not None and password_kdf.sealed_under(sealed, run)


def _attempt(
    client, runtime: ServiceContext, email: str, password: str, person: Person | None
) -> int:
    body = {"email": email, "password": password}
    if person is not None and person.totp_secret:
        runtime.clock.advance(seconds=30)
        body["totp_code"] = code_for(person, runtime)
    return client.post(TOKEN, json=body).status_code


def test_sign_in_costs_one_scrypt_and_one_bcrypt_whoever_asks(client, runtime, monkeypatch):
    member = make_member(runtime)
    clinician = make_staff(runtime, Role.CLINICIAN)
    admin = make_staff(runtime, Role.ADMIN)
    work = count_password_work(monkeypatch)
    seen = {}
    for label, email, password, person, status in (
        ("unknown", "nobody@example.org", member.password, None, 401),
        ("member, wrong", member.email, member.password + "x", None, 401),
        ("admin, wrong", admin.email, admin.password + "x", None, 401),
        ("member, right", member.email, member.password, member, 200),
        ("clinician, right", clinician.email, clinician.password, clinician, 200),
        ("admin, right", admin.email, admin.password, admin, 200),
    ):
        work.clear()
        assert _attempt(client, runtime, email, password, person) == status, label
        seen[label] = dict(work)
    assert all(each == {"scrypt": 1, "bcrypt": 1} for each in seen.values()), seen


def test_an_account_from_before_is_upgraded_at_its_next_sign_in(client, runtime, monkeypatch):
    member = make_member(runtime)
    as_before(runtime, member)
    work = count_password_work(monkeypatch)
    # A wrong password against the old hash: the same work as any other, nothing changes.
    assert _attempt(client, runtime, member.email, member.password + "x", None) == 401
    assert dict(work) == {"scrypt": 1, "bcrypt": 1}
    hashed, sealed = _dumped(runtime)[member.id.hex]
    assert hashed.startswith(b"$2b$") and sealed is not None and sealed[0] == 1
    # The first right sign-in: the old hash checked, then replaced (one bcrypt more), the
    # version 1 key opened with its own salt (one scrypt more) and sealed with the new run.
    work.clear()
    assert _attempt(client, runtime, member.email, member.password, member) == 200
    assert dict(work) == {"scrypt": 2, "bcrypt": 2}
    hashed, sealed = _dumped(runtime)[member.id.hex]
    params, salt, _ = _stored(hashed)
    run = password_kdf.Password(member.password).stretched(salt, params)
    assert sealed is not None and password_kdf.sealed_under(sealed, run)
    with runtime.database.transaction() as session:
        actions = list(
            session.scalars(select(AuditEntry.action).where(AuditEntry.target_id == str(member.id)))
        )
    assert {"auth.password_upgrade", "key.personal_reseal"} <= set(actions)
    # From then on: one scrypt run and one bcrypt check per sign-in.
    work.clear()
    assert _attempt(client, runtime, member.email, member.password, member) == 200
    assert dict(work) == {"scrypt": 1, "bcrypt": 1}
