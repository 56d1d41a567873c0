"""Migration 0008 tags the rows already there, with the keys ``medchat db upgrade`` hands it.

Rows written before row tags existed must keep working after the upgrade (or every session,
grant and account would be refused), and the tags must be the ones the service checks.
"""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, select, text

from access_control.key_directory import load_server_keys
from access_control.row_tags import RowTagger
from medchat.db import Base
from medchat.models.integrity import integrity_of
from medchat.storage.migrate import MIGRATIONS, alembic_config


def _migration():
    path = next((MIGRATIONS / "versions").glob("0008_*.py"))
    spec = importlib.util.spec_from_file_location("row_tags_0008", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _declared_tagged() -> dict[str, tuple[str, ...]]:
    return {
        mapper.local_table.name: spec.columns
        for mapper in Base.registry.mappers
        if (spec := integrity_of(mapper.class_)) is not None and spec.kind == "tagged"
    }


def test_the_migration_tags_what_the_models_declare():
    """A tag's columns changed in a model without a migration that re-tags would make every
    existing row of that table fail: the frozen list of 0008 must match the declarations."""
    frozen = {name: tuple(c for c, _ in columns) for name, columns in _migration().TAGGED.items()}
    declared = _declared_tagged()
    assert {name: declared.get(name) for name in frozen} == frozen


def test_a_tagged_table_0008_does_not_list_was_created_after_it(tmp_path: Path):
    """A table made by a later migration is tagged from its first row, so 0008 has nothing to
    backfill for it; any other tagged table missing from 0008's list would hold untagged rows."""
    url = f"sqlite:///{tmp_path / 'at-0008.sqlite3'}"
    command.upgrade(alembic_config(url), "0008")
    engine = create_engine(url)
    existing = set(inspect(engine).get_table_names())
    engine.dispose()
    later = set(_declared_tagged()) - set(_migration().TAGGED)
    assert later == {
        "email_change_tokens",
        "conversation_key_epochs",
        # 0019: notifications (issue 17 item 1)
        "notification_outbox",
        "push_subscriptions",
        "notification_preferences",
        "known_devices",
        # 0020: claims on questions (issue 17 item 3)
        "conversation_claims",
        # 0022: restriction of processing (issue 16 item 6)
        "processing_restrictions",
    }
    assert not later & existing


def _account_and_token(url: str) -> tuple[uuid.UUID, uuid.UUID]:
    engine = create_engine(url)
    account, token = uuid.uuid4(), uuid.uuid4()
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO accounts (id, role, status, email_index, email_ciphertext,"
                " first_name, last_name_ciphertext, created_at) VALUES (:id, 'member', 'active',"
                " :index, :blob, 'Ann', :blob, '2026-01-01 00:00:00')"
            ),
            {"id": account.hex, "index": b"i" * 32, "blob": b"x"},
        )
        connection.execute(
            text(
                "INSERT INTO auth_tokens (id, account_id, family_id, kind, token_hash,"
                " mfa_verified, created_at, expires_at, family_expires_at) VALUES (:id, :account,"
                " :family, 'access', :hash, 0, '2026-01-01 00:00:00', '2026-01-01 00:15:00',"
                " '2026-01-31 00:00:00')"
            ),
            {
                "id": token.hex,
                "account": account.hex,
                "family": uuid.uuid4().hex,
                "hash": b"h" * 32,
            },
        )
    engine.dispose()
    return account, token


def test_existing_rows_are_tagged_with_the_integrity_key_and_only_with_it(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'before.sqlite3'}"
    command.upgrade(alembic_config(url), "0007")
    account, token = _account_and_token(url)

    # Plain ``alembic upgrade`` has no keys: it refuses rather than leave untagged rows.
    with pytest.raises(RuntimeError, match="server keys"):
        command.upgrade(alembic_config(url), "0008")

    keys = load_server_keys(tmp_path / "keys", create_missing=True)
    command.upgrade(alembic_config(url, keys), "0008")
    tagger = RowTagger(keys.integrity)
    other = RowTagger(load_server_keys(tmp_path / "other", create_missing=True).integrity)
    engine = create_engine(url)
    with engine.connect() as connection:
        for table, row_id in (("accounts", account), ("auth_tokens", token)):
            # Read through the models' column types, as the service reads the row.
            columns = Base.metadata.tables[table].c
            names = [c for c, _ in _migration().TAGGED[table]]
            row = connection.execute(
                select(*(columns[name] for name in names), columns.row_tag).where(
                    columns.id == row_id
                )
            ).one()
            values = list(row)[:-1]
            assert tagger.verify(table, values, row.row_tag)
            assert not other.verify(table, values, row.row_tag)
    engine.dispose()


def test_an_empty_database_needs_no_keys(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    command.upgrade(alembic_config(url), "0008")
