"""One transaction per request: the audit append and the change commit together or not at all."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from medchat import audit
from medchat.audit.addresses import AddressKeys, reveal
from medchat.models import Account, AuditEntry
from tests.support.accounts import REGISTRATION


def _count(runtime, model) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def audit_inserts_fail(runtime):
    """Make the database itself refuse audit rows (a real failure, not a mock)."""
    engine = runtime.database.engine
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(
                text(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_entries "
                    "BEGIN SELECT RAISE(ABORT, 'audit store unavailable'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'audit store unavailable'; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_entries "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
                )
            )
    yield
    with engine.begin() as connection:
        connection.execute(
            text(
                "DROP TRIGGER refuse_audit"
                + ("" if engine.dialect.name == "sqlite" else " ON audit_entries")
            )
        )
        if engine.dialect.name != "sqlite":
            connection.execute(text("DROP FUNCTION refuse_audit()"))


def test_a_failed_audit_write_rolls_the_request_back(client, runtime, audit_inserts_fail):
    response = client.post("/api/v1/auth/register", json=REGISTRATION)
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert "Traceback" not in response.get_data(as_text=True)
    assert _count(runtime, Account) == 0


def test_a_successful_request_commits_its_change_and_its_audit_entry(client, runtime):
    assert client.post("/api/v1/auth/register", json=REGISTRATION).status_code == 202
    assert _count(runtime, Account) == 1
    with runtime.database.transaction() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "account.register"))
        keys = AddressKeys(seal=runtime.keys.profile, commit=runtime.keys.audit_mac)
        assert entry is not None and reveal(keys, entry) == "127.0.0.1"
        assert audit.verify(session, runtime.keys.audit_mac).ok


def test_a_refused_request_keeps_only_the_record_of_its_refusal(client, runtime):
    # A weak password: the request fails validation after the service started working.
    response = client.post("/api/v1/auth/register", json={**REGISTRATION, "password": "password1"})
    assert response.status_code == 422
    assert _count(runtime, Account) == 0
    assert _count(runtime, AuditEntry) == 0
