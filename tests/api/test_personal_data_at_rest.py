"""A database dump alone names nobody (SECURITY-MODEL "What counts as content")."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, update

from access_control import crypto
from medchat.models import Account
from tests.support.accounts import REGISTRATION, bearer
from tests.support.dump import database_dump

CANARIES = {
    "email": "canary.qx7z@example.org",
    # What a clinician sees of a patient is sealed as well (migration 0021).
    "first_name": "Canaryfirstnameqx",
    "birth_date": "1931-07-29",
    "last_name": "Canarylastnameqx",
    "phone": "+33 6 99 88 77 66",
    "insurance_number": "INS-CANARY-7731",
}


def test_the_dump_holds_no_personal_field_of_the_profile(client, runtime):
    body = {**REGISTRATION, **CANARIES}
    assert client.post("/api/v1/auth/register", json=body).status_code == 202
    token = client.post(
        "/api/v1/auth/token", json={"email": CANARIES["email"], "password": body["password"]}
    )
    assert token.status_code == 200
    # The member reads the values back: they are stored, just not in clear.
    me = client.get("/api/v1/me", headers=bearer(token.get_json())).get_json()
    assert {k: me[k] for k in CANARIES} == CANARIES
    dump = database_dump(runtime.database.engine)
    for name, value in CANARIES.items():
        for form in {value, value.lower(), value.upper()}:
            assert form.encode() not in dump, f"{name} found in clear in the database"
    assert b"canary.qx7z" not in dump
    assert b"19310729" not in dump and b"29/07/1931" not in dump


def test_a_sealed_first_name_or_birth_date_moved_to_another_account_does_not_open(client, runtime):
    client.post("/api/v1/auth/register", json={**REGISTRATION, **CANARIES})
    with runtime.database.transaction() as session:
        victim = session.scalar(
            select(Account).where(
                Account.email_index == runtime.profiles.email_index(CANARIES["email"])
            )
        )
        profiles = runtime.profiles
        assert (
            profiles.open(victim.id, "first_name", victim.first_name_ciphertext)
            == (CANARIES["first_name"])
        )
        sealed_birth = victim.profile.birth_date_ciphertext
        assert (
            profiles.open_date(victim.id, "birth_date", sealed_birth).isoformat()
            == (CANARIES["birth_date"])
        )
        assert profiles.open(victim.id, "sex", victim.profile.sex_ciphertext) == "female"
        with pytest.raises(crypto.DecryptionFailed):
            profiles.open(uuid.uuid4(), "first_name", victim.first_name_ciphertext)
        with pytest.raises(crypto.DecryptionFailed):
            profiles.open(victim.id, "sex", sealed_birth)


def test_an_encrypted_field_moved_to_another_account_does_not_open(client, runtime):
    client.post("/api/v1/auth/register", json={**REGISTRATION, **CANARIES})
    client.post("/api/v1/auth/register", json={**REGISTRATION, "email": "other@example.org"})
    with runtime.database.transaction() as session:
        victim = session.scalar(
            select(Account).where(
                Account.email_index == runtime.profiles.email_index(CANARIES["email"])
            )
        )
        other = session.scalar(
            select(Account).where(
                Account.email_index == runtime.profiles.email_index("other@example.org")
            )
        )
        session.execute(
            update(Account)
            .where(Account.id == other.id)
            .values(last_name_ciphertext=victim.last_name_ciphertext)
        )
    with runtime.database.transaction() as session:
        moved = session.get(Account, other.id)
        with pytest.raises(crypto.DecryptionFailed):
            runtime.profiles.open(moved.id, "last_name", moved.last_name_ciphertext)
        # ...nor in another field of the same account.
        with pytest.raises(crypto.DecryptionFailed):
            runtime.profiles.open(victim.id, "email", victim.last_name_ciphertext)


def test_email_lookup_uses_a_keyed_index_not_a_plain_hash(runtime):
    import hashlib

    index = runtime.profiles.email_index("Some.One@Example.org ")
    assert index == runtime.profiles.email_index("some.one@example.org")
    assert index != hashlib.sha256(b"some.one@example.org").digest()
