"""Alembic environment: the only way medchat's schema is created or changed.

The URL comes from the Alembic config (set by ``medchat.storage.migrate``) or, when Alembic is run
by
hand, from ``MEDCHAT_DATABASE_URL``. SQLite uses batch mode, which rebuilds tables for the
ALTERs SQLite lacks.
"""

from __future__ import annotations

import os

from alembic import context

from medchat import models  # noqa: F401  (registers every table on Base.metadata)
from medchat.db import Base, make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or os.environ.get(
    "MEDCHAT_DATABASE_URL", "sqlite:///var/medchat.sqlite3"
)


def run_migrations_offline() -> None:
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
