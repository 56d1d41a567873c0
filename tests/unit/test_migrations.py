"""The schema Alembic makes is the schema the models describe (Alembic is the only way tables
are made, so a model changed without a migration would only fail in production)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from medchat.db import Base


def test_the_migrated_schema_matches_the_models(runtime):
    with runtime.database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


@pytest.mark.parametrize(
    ("index", "predicate"),
    [
        ("ix_conversations_live_created_at", "<> 'sealed'"),
        ("ix_conversations_sealed_sealed_at", "= 'sealed'"),
    ],
)
def test_retention_indexes_hold_only_the_rows_of_their_state(runtime, index, predicate):
    """Autogenerate compares index columns, not predicates: read the definition itself."""
    with runtime.database.engine.connect() as connection:
        if runtime.database.is_postgresql:
            definition = connection.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"), {"name": index}
            ).scalar_one()
        else:
            definition = connection.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"),
                {"name": index},
            ).scalar_one()
    assert "WHERE" in definition.upper()
    assert predicate in definition.replace("'sealed'::text", "'sealed'").replace(
        "::character varying", ""
    )


def test_0009_marks_existing_conversations_format_1_and_refuses_to_go_back_over_format_2(
    tmp_path,
):
    """Rows from before content format 2 keep their key-set tags (made at version 1), so the
    column they get must say 1; going back below 0009 would strand format-2 conversations."""
    import uuid

    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from medchat.storage.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'before.sqlite3'}"
    config = alembic_config(url)
    before = ScriptDirectory.from_config(config).get_revision("0009").down_revision
    command.upgrade(config, before)
    engine = create_engine(url)
    existing = uuid.uuid4()
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO conversations (id, member_id, status, message_count, key_commitment,"
                " key_tag, created_at, last_message_at) VALUES (:id, :member, 'open', 0, :c, :t,"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            ),
            {"id": existing.hex, "member": uuid.uuid4().hex, "c": bytes(32), "t": bytes(32)},
        )
    command.upgrade(config, "0009")
    with engine.begin() as connection:
        assert connection.execute(text("SELECT content_version FROM conversations")).all() == [(1,)]
        connection.execute(text("UPDATE conversations SET content_version = 2"))
    with pytest.raises(RuntimeError, match="content format 2"):
        command.downgrade(config, before)
    with engine.begin() as connection:
        connection.execute(text("UPDATE conversations SET content_version = 1"))
    command.downgrade(config, before)
    engine.dispose()


def test_0013_deletes_pending_console_sessions_and_their_keyrings(tmp_path):
    """A pending console row of the release before holds a sealed keyring opened by the
    password alone; the upgrade deletes it (issue 18 item 6) and leaves other sessions."""
    import uuid

    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from medchat.storage.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'before.sqlite3'}"
    config = alembic_config(url)
    before = ScriptDirectory.from_config(config).get_revision("0013").down_revision
    command.upgrade(config, before)
    engine = create_engine(url)
    with engine.begin() as connection:
        for kind in ("console_pending", "console"):
            row_id = uuid.uuid4().hex
            connection.execute(
                text(
                    "INSERT INTO auth_tokens (id, account_id, family_id, kind, token_hash,"
                    " mfa_verified, created_at, expires_at, family_expires_at, sealed_keys,"
                    " row_tag) VALUES (:id, :account, :id, :kind, :hash, 0,"
                    " '2026-01-01 00:00:00', '2026-01-01 00:05:00', '2026-01-01 00:05:00',"
                    " :keys, :tag)"
                ),
                {
                    "id": row_id,
                    "account": uuid.uuid4().hex,
                    "kind": kind,
                    "hash": uuid.uuid4().bytes * 2,
                    "keys": b"\x02sealed keyring",
                    "tag": bytes(32),
                },
            )
    command.upgrade(config, "0013")
    with engine.begin() as connection:
        kinds = connection.execute(text("SELECT kind FROM auth_tokens")).scalars().all()
    assert kinds == ["console"]
    engine.dispose()


def test_0016_puts_existing_wraps_in_epoch_1_and_refuses_to_go_back_over_epoch_2(tmp_path):
    """Key epochs rewrite nothing: the wraps there are epoch 1, and a conversation may then
    hold one wrap per epoch for the same key; going back is refused while one has epoch 2."""
    import uuid

    from alembic import command
    from sqlalchemy import create_engine

    from medchat.storage.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'before.sqlite3'}"
    config = alembic_config(url)
    command.upgrade(config, "0015")
    engine = create_engine(url)
    conversation = uuid.uuid4().hex
    wrap = (
        "INSERT INTO conversation_key_wraps (id, conversation_id, holder, recipient_key_id, wrap,"
        " created_at{epoch}) VALUES (:id, :c, 'physician', :k, :w, '2026-01-01 00:00:00'{value})"
    )
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO conversations (id, member_id, status, message_count, key_commitment,"
                " key_tag, created_at, last_message_at) VALUES (:id, :member, 'open', 0, :c, :t,"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            ),
            {"id": conversation, "member": uuid.uuid4().hex, "c": bytes(32), "t": bytes(32)},
        )
        connection.execute(
            text(wrap.format(epoch="", value="")),
            {"id": uuid.uuid4().hex, "c": conversation, "k": bytes(8), "w": b"old"},
        )
    command.upgrade(config, "0016")
    with engine.begin() as connection:
        assert connection.execute(text("SELECT epoch FROM conversation_key_wraps")).all() == [(1,)]
        connection.execute(
            text(wrap.format(epoch=", epoch", value=", 2")),
            {"id": uuid.uuid4().hex, "c": conversation, "k": bytes(8), "w": b"new"},
        )
    with pytest.raises(RuntimeError, match="second key epoch"):
        command.downgrade(config, "0015")
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM conversation_key_wraps WHERE epoch = 2"))
    command.downgrade(config, "0015")
    with engine.begin() as connection:
        assert connection.execute(text("SELECT wrap FROM conversation_key_wraps")).all() == [
            (b"old",)
        ]
    engine.dispose()
