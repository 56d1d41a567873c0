"""Migration 0021 seals the first names, birth dates and sexes already stored (issue 16 item 4).

The rows written before it must open afterwards exactly as the service seals new ones (account
id and field as associated data, under the profile key ``medchat db upgrade`` hands over), the
clear columns must be gone, and going back restores them.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from access_control import crypto
from access_control.key_directory import load_server_keys
from medchat.keys.personal_data import ProfileCipher
from medchat.storage.migrate import alembic_config


def _member(url: str, first_name: str) -> uuid.UUID:
    engine = create_engine(url)
    account = uuid.uuid4()
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO accounts (id, role, status, email_index, email_ciphertext,"
                " first_name, last_name_ciphertext, created_at) VALUES (:id, 'member', 'active',"
                " :index, :blob, :first, :blob, '2026-01-01 00:00:00')"
            ),
            {"id": account.hex, "index": uuid.uuid4().bytes * 2, "blob": b"x", "first": first_name},
        )
        connection.execute(
            text(
                "INSERT INTO member_profiles (account_id, birth_date, sex)"
                " VALUES (:id, '1931-07-29', 'female')"
            ),
            {"id": account.hex},
        )
        connection.execute(
            text("INSERT INTO recovery_codes (id, account_id, code_hash) VALUES (:id, :a, :h)"),
            {"id": uuid.uuid4().hex, "a": account.hex, "h": bytes(32)},
        )
    engine.dispose()
    return account


def test_0021_seals_existing_rows_drops_the_clear_columns_and_goes_back(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'before.sqlite3'}"
    command.upgrade(alembic_config(url), "0017")
    ann, tombstone = _member(url, "Annecanary"), _member(url, "")

    # Plain ``alembic upgrade`` has no keys: it refuses rather than leave rows unsealed.
    with pytest.raises(RuntimeError, match="server keys"):
        command.upgrade(alembic_config(url), "0021")

    keys = load_server_keys(tmp_path / "keys", create_missing=True)
    command.upgrade(alembic_config(url, keys), "0021")
    engine = create_engine(url)
    columns = {
        table: {c["name"] for c in inspect(engine).get_columns(table)}
        for table in ("accounts", "member_profiles")
    }
    assert "first_name" not in columns["accounts"]
    # Rows that reference an account survive (rebuilding ``accounts`` would cascade-delete them).
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM recovery_codes")).scalar() == 2
    assert not {"birth_date", "sex"} & columns["member_profiles"]
    cipher = ProfileCipher(keys)
    with engine.connect() as connection:
        rows = {
            uuid.UUID(row.id): row
            for row in connection.execute(
                text(
                    "SELECT a.id, a.first_name_ciphertext, p.birth_date_ciphertext,"
                    " p.sex_ciphertext FROM accounts a JOIN member_profiles p"
                    " ON p.account_id = a.id"
                )
            )
        }
    # The clear values linger in free pages until a VACUUM, the step the upgrade notes ask for.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM"))
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("before.sqlite3*"))
    assert b"Annecanary" not in stored
    row = rows[ann]
    assert cipher.open(ann, "first_name", row.first_name_ciphertext) == "Annecanary"
    assert cipher.open_date(ann, "birth_date", row.birth_date_ciphertext) == date(1931, 7, 29)
    assert cipher.open(ann, "sex", row.sex_ciphertext) == "female"
    with pytest.raises(crypto.DecryptionFailed):
        cipher.open(tombstone, "first_name", row.first_name_ciphertext)
    # A tombstone's empty first name stays empty, as its other fields are.
    assert rows[tombstone].first_name_ciphertext == b""

    command.downgrade(alembic_config(url, keys), "0017")
    with engine.connect() as connection:
        back = connection.execute(
            text(
                "SELECT a.first_name, p.birth_date, p.sex FROM accounts a"
                " JOIN member_profiles p ON p.account_id = a.id WHERE a.id = :id"
            ),
            {"id": ann.hex},
        ).one()
    assert tuple(back) == ("Annecanary", "1931-07-29", "female")
    engine.dispose()


def test_0021_refuses_to_go_back_over_sealed_audit_addresses(tmp_path: Path):
    """The code before 0021 could not verify a format 3 entry: going back is refused."""
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    keys = load_server_keys(tmp_path / "keys", create_missing=True)
    command.upgrade(alembic_config(url, keys), "0021")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_entries (seq, id, at, action, outcome, details, prev_hash,"
                " entry_hash, mac, chain, position, format, address_hash, address_sealed)"
                " VALUES (1, :id, '2026-01-01 00:00:00', 'test', 'success', '{}', :h, :h, :h,"
                " 'audit', 1, 3, :h, :h)"
            ),
            {"id": uuid.uuid4().hex, "h": bytes(32)},
        )
    engine.dispose()
    with pytest.raises(RuntimeError, match="format 3"):
        command.downgrade(alembic_config(url, keys), "0017")
