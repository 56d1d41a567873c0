"""Every test gets an app built by ``create_app`` on a database made by Alembic.

Database-backed tests run once on SQLite and once more on PostgreSQL when
``MEDCHAT_TEST_DATABASE_URL`` is set. The schema is migrated once per backend; after each
test every table is emptied. Password hashing costs are lowered here (production refuses
that at start; ``tests/unit/test_config.py`` proves the defaults).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from medchat import create_app
from medchat.services.context import ServiceContext
from tests.support import fast_first
from tests.support.clock import ManualClock
from tests.support.databases import backends, empty_all_tables, fresh_database

TEST_SETTINGS: dict[str, Any] = {
    "bcrypt_rounds": 4,
    "scrypt_log2_n": 10,
    "staff_networks": "127.0.0.0/8,::1/128",
}


@pytest.fixture(scope="session", params=backends())
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with fresh_database(request.param, tmp_path_factory.mktemp(request.param)) as url:
        yield url


@pytest.fixture
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A key directory per test: role-key pins written by one test never leak into another."""
    return tmp_path_factory.mktemp("keys")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_app(database_url: str, key_dir: Path, clock: ManualClock) -> Iterator[Any]:
    """Build apps with extra settings; every app built is torn down after the test."""
    built: list[Flask] = []

    def _make(**overrides: Any) -> Flask:
        settings = {
            **TEST_SETTINGS,
            "database_url": database_url,
            "key_dir": key_dir,
            "ratelimit_storage_uri": os.environ.get(
                "MEDCHAT_TEST_RATELIMIT_STORAGE_URI", "memory://"
            ),
            "ratelimit_key_prefix": f"medchat-test-{uuid.uuid4().hex}",
            **overrides,
        }
        app = create_app(settings, clock=clock)
        app.config["TESTING"] = True
        built.append(app)
        return app

    yield _make
    for app in built:
        runtime: ServiceContext = app.extensions["medchat"]
        empty_all_tables(runtime.database.engine)
        runtime.database.dispose()


@pytest.fixture
def app(make_app: Any) -> Flask:
    return make_app()  # type: ignore[no-any-return]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runtime(app: Flask) -> ServiceContext:
    return app.extensions["medchat"]  # type: ignore[no-any-return]


# Mutation runs only (``MEDCHAT_TEST_FAST_FIRST``, tests/support/fast_first.py): the first run
# times each test, the later ones run the fastest first.
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    fast_first.order_fastest_first(items)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    fast_first.measure(report)


def pytest_sessionfinish(session: pytest.Session) -> None:
    fast_first.write_record()
