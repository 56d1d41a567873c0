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


def test_0027_dates_each_conversations_status_from_its_messages(tmp_path):
    """``status_since`` for rows from before it: an open conversation waits since the member's
    first message after the last answer, an answered one since its first answer after the
    member's last message, a closed or sealed one since it was closed or sealed."""
    import uuid

    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from medchat.storage.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'before.sqlite3'}"
    config = alembic_config(url)
    before = ScriptDirectory.from_config(config).get_revision("0027").down_revision
    command.upgrade(config, before)
    engine = create_engine(url)
    at = "2026-01-01 00:00:0{}".format
    cases = {  # name: (status, its messages' authors and times)
        "asked again": ("open", [("member", 1), ("clinician", 2), ("member", 3), ("member", 4)]),
        "never answered": ("open", [("member", 1), ("member", 2)]),
        "no messages": ("open", []),
        "answered twice": ("answered", [("member", 1), ("clinician", 2), ("clinician", 3)]),
        "closed": ("closed", [("member", 1), ("clinician", 2)]),
        "sealed": ("sealed", [("member", 1)]),
    }
    ids = {name: uuid.uuid4().hex for name in cases}
    with engine.begin() as connection:
        for name, (status, messages) in cases.items():
            connection.execute(
                text(
                    "INSERT INTO conversations (id, member_id, status, message_count,"
                    " key_commitment, key_tag, created_at, last_message_at, closed_at,"
                    " sealed_at) VALUES (:id, :member, :status, :count, :c, :t, :first, :last,"
                    " :closed, :sealed)"
                ),
                {
                    "id": ids[name],
                    "member": uuid.uuid4().hex,
                    "status": status,
                    "count": len(messages),
                    "c": bytes(32),
                    "t": bytes(32),
                    "first": at(0),
                    "last": at(5),
                    "closed": at(8) if status == "closed" else None,
                    "sealed": at(9) if status == "sealed" else None,
                },
            )
            for seq, (author, second) in enumerate(messages, start=1):
                connection.execute(
                    text(
                        "INSERT INTO messages (id, conversation_id, seq, author_role, author_id,"
                        " body_ciphertext, created_at) VALUES (:id, :c, :seq, :author, :who,"
                        " :body, :at)"
                    ),
                    {
                        "id": uuid.uuid4().hex,
                        "c": ids[name],
                        "seq": seq,
                        "author": author,
                        "who": uuid.uuid4().hex,
                        "body": b"sealed",
                        "at": at(second),
                    },
                )
    command.upgrade(config, "0027")
    with engine.begin() as connection:
        since = dict(connection.execute(text("SELECT id, status_since FROM conversations")).all())
    assert {name: since[ids[name]] for name in cases} == {
        "asked again": at(3),
        "never answered": at(1),
        "no messages": at(5),
        "answered twice": at(2),
        "closed": at(8),
        "sealed": at(9),
    }
    # No rebuild of the table: its messages are all there, after the upgrade and going back.
    written = sum(len(messages) for _, messages in cases.values())
    with engine.begin() as connection:
        assert connection.execute(text("SELECT count(*) FROM messages")).scalar() == written
    command.downgrade(config, before)
    with engine.begin() as connection:
        assert connection.execute(text("SELECT count(*) FROM messages")).scalar() == written
    engine.dispose()


def test_conversations_leave_room_in_each_page_for_a_sends_update(runtime):
    """A heap-only update needs room for the row's new version in its own page (0027)."""
    if not runtime.database.is_postgresql:
        pytest.skip("a storage parameter of PostgreSQL's")
    with runtime.database.engine.connect() as connection:
        options = connection.execute(
            text("SELECT reloptions FROM pg_class WHERE relname = 'conversations'")
        ).scalar_one()
    assert options == ["fillfactor=90"]
