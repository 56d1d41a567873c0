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
