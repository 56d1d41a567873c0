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
from sqlalchemy import event

from medchat import create_app
from medchat.config import Settings
from medchat.services.context import ServiceContext, start_service_context
from tests.support import fast_first
from tests.support.clock import ManualClock
from tests.support.databases import backends, empty_all_tables, fresh_database
from tests.support.settings import TEST_SETTINGS


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


class AppFactory:
    """Builds apps, or bare service contexts, on the test's database, key directory and clock;
    tears every one down after the test (each table emptied)."""

    def __init__(self, database_url: str, key_dir: Path, clock: ManualClock) -> None:
        self.database_url, self.key_dir, self.clock = database_url, key_dir, clock
        self.built: list[ServiceContext] = []
        #: Connections handed back to a pool still in autocommit mode: a statement run
        #: ``db_driver.outside_transaction`` must never leave one so, whatever the route.
        self.returned_in_autocommit = 0

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {
            **TEST_SETTINGS,
            "database_url": self.database_url,
            "key_dir": self.key_dir,
            "ratelimit_storage_uri": os.environ.get(
                "MEDCHAT_TEST_RATELIMIT_STORAGE_URI", "memory://"
            ),
            "ratelimit_key_prefix": f"medchat-test-{uuid.uuid4().hex}",
            **overrides,
        }

    def __call__(self, **overrides: Any) -> Flask:
        app = create_app(self.settings(**overrides), clock=self.clock)
        app.config["TESTING"] = True
        self._built(app.extensions["medchat"])
        return app

    def service_context(self, **overrides: Any) -> ServiceContext:
        """What ``create_app`` starts before its blueprints (``start_service_context``), for
        tests of services: a tenth of an app's cost."""
        runtime = start_service_context(
            Settings.from_env(overrides=self.settings(**overrides)), self.clock
        )
        self._built(runtime)
        return runtime

    def _built(self, runtime: ServiceContext) -> None:
        def checked_in(dbapi_connection: Any, _record: Any) -> None:
            # psycopg's flag; SQLite's connections have none (or not True) here.
            if getattr(dbapi_connection, "autocommit", False) is True:
                self.returned_in_autocommit += 1

        event.listen(runtime.database.engine, "checkin", checked_in)
        self.built.append(runtime)

    def tear_down(self) -> None:
        for runtime in self.built:
            empty_all_tables(runtime.database.engine)
            runtime.database.dispose()
        assert self.returned_in_autocommit == 0, "a pooled connection came back in autocommit"


@pytest.fixture
def make_app(database_url: str, key_dir: Path, clock: ManualClock) -> Iterator[AppFactory]:
    """Build apps with extra settings; every app built is torn down after the test."""
    factory = AppFactory(database_url, key_dir, clock)
    yield factory
    factory.tear_down()


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runtime(request: pytest.FixtureRequest, make_app: AppFactory) -> ServiceContext:
    """The app's service context when the test has an app (it asks for ``app`` or ``client``,
    or its module builds its own ``app``); otherwise one started without the web layer."""
    if "app" in request.fixturenames or hasattr(request.module, "app"):
        app: Flask = request.getfixturevalue("app")
        return app.extensions["medchat"]  # type: ignore[no-any-return]
    return make_app.service_context()


# Mutation runs only (``MEDCHAT_TEST_FAST_FIRST``, tests/support/fast_first.py): the first run
# times each test, the later ones run the fastest first.
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    fast_first.order_fastest_first(items)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    fast_first.measure(report)


def pytest_sessionfinish(session: pytest.Session) -> None:
    fast_first.write_record()
