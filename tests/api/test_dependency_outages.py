"""Failing well (issue 13, items 7-9): an outage is a 503 that heals, never a 500.

Real components throughout: a PostgreSQL URL on a port where nothing listens, a Redis URL on a
closed port, and on the test PostgreSQL (``MEDCHAT_TEST_DATABASE_URL``) backends killed with
``pg_terminate_backend`` and a database made read-only and restored, from another connection.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url

from medchat import create_app
from medchat.db import make_engine, server_closed
from tests.support.accounts import bearer, login, make_member
from tests.support.clock import ManualClock
from tests.support.console import post_form
from tests.support.settings import TEST_SETTINGS

TOKEN = "/api/v1/auth/token"


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_dependency_down(response: Any, dependency: str | None = None) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    assert int(response.headers["Retry-After"]) > 0
    if response.mimetype == "application/json":
        error = response.get_json()["error"]
        assert error["code"] == "dependency_down"
        if dependency is not None:
            assert error["details"].get("dependency", dependency) == dependency
    assert "Traceback" not in response.get_data(as_text=True)


# -- item 7: PostgreSQL down ----------------------------------------------------------------


@pytest.fixture
def app_without_postgresql(key_dir, tmp_path) -> Iterator[Flask]:
    """An app whose PostgreSQL server refuses every connection (nothing on its port)."""
    url = f"postgresql+psycopg://medchat@127.0.0.1:{closed_port()}/medchat"
    app = create_app(
        {**TEST_SETTINGS, "database_url": url, "key_dir": key_dir}, clock=ManualClock()
    )
    app.config["TESTING"] = True
    yield app
    app.extensions["medchat"].database.dispose()


def test_postgresql_down_is_503_with_retry_after_on_every_route(app_without_postgresql, caplog):
    client = app_without_postgresql.test_client()
    sign_in = {"email": "someone@example.org", "password": "a-long-password-1"}

    with caplog.at_level(logging.WARNING):
        assert_dependency_down(client.post(TOKEN, json=sign_in), "database")
        assert_dependency_down(
            client.get("/api/v1/me", headers={"Authorization": "Bearer x" * 3}), "database"
        )
        assert_dependency_down(client.post("/api/v1/auth/refresh", json={"refresh_token": "r"}))
        ready = client.get("/readyz")

    assert_dependency_down(ready)
    assert ready.get_json()["error"]["details"] == {"failed": ["database"]}
    assert client.get("/healthz").status_code == 200
    # One line per outage, naming the dependency and nothing of the connection string.
    lines = [r.getMessage() for r in caplog.records if "dependency down" in r.getMessage()]
    assert lines and all("database" in line for line in lines)
    assert not any("127.0.0.1" in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("medchat"))


def test_the_console_answers_a_database_outage_with_a_503_page(app_without_postgresql):
    client = app_without_postgresql.test_client()

    response = post_form(
        client,
        "/console/login",
        {"email": "someone@staff.example.org", "password": "a-long-password-1"},
    )

    assert_dependency_down(response)
    assert response.mimetype == "text/html"
    assert "Temporarily unavailable" in response.get_data(as_text=True)


# -- item 9: Redis (the rate limiter's storage) down --------------------------------------------


@pytest.fixture
def app_without_redis(make_app) -> Flask:
    return make_app(ratelimit_storage_uri=f"redis://127.0.0.1:{closed_port()}")  # type: ignore[no-any-return]


def test_sign_in_keeps_answering_when_redis_is_down(app_without_redis, caplog):
    client = app_without_redis.test_client()
    member = make_member(app_without_redis.extensions["medchat"])
    wrong = {"email": member.email, "password": "not-the-password-1"}

    with caplog.at_level(logging.WARNING):
        assert (
            client.post(
                TOKEN, json={"email": member.email, "password": member.password}
            ).status_code
            == 200
        )
        statuses = [client.post(TOKEN, json=wrong).status_code for _ in range(6)]

    # Wrong passwords are still counted, in this process: the sixth from this address is 429.
    assert statuses == [401] * 5 + [429]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("unreachable" in message for message in warnings)


def test_readyz_names_the_rate_limit_storage_when_redis_is_down(app_without_redis):
    response = app_without_redis.test_client().get("/readyz")

    assert_dependency_down(response)
    assert response.get_json()["error"]["details"] == {"failed": ["rate_limit_storage"]}
    assert "127.0.0.1" not in response.get_data(as_text=True)


def test_readyz_checks_the_key_files(app, key_dir):
    client = app.test_client()
    # (with a Redis limiter storage configured, as in CI, it is checked too)
    assert {"database", "key_files"} <= set(client.get("/readyz").get_json()["checked"])

    (key_dir / "profile.key").rename(key_dir / "moved-away")
    response = client.get("/readyz")

    assert_dependency_down(response)
    assert response.get_json()["error"]["details"] == {"failed": ["key_files"]}
    assert "profile" not in response.get_data(as_text=True)


# -- item 8: connections that fail are discarded (PostgreSQL) ------------------------------------


@pytest.fixture
def pg_admin(database_url: str) -> Iterator[Engine]:
    if not database_url.startswith("postgresql"):
        pytest.skip("needs MEDCHAT_TEST_DATABASE_URL (PostgreSQL)")
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    yield admin
    admin.dispose()


def test_a_connection_killed_mid_request_is_one_503_then_the_service_heals(app, runtime, pg_admin):
    client = app.test_client()
    member = make_member(runtime)
    headers = bearer(login(client, runtime, member))
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    killed: list[int] = []

    @event.listens_for(runtime.database.engine, "before_cursor_execute")
    def _kill_once(connection: Any, *_: Any) -> None:
        if not killed:
            pid = connection.connection.dbapi_connection.info.backend_pid
            killed.append(pid)
            with pg_admin.connect() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    assert_dependency_down(client.get("/api/v1/me", headers=headers), "database")
    event.remove(runtime.database.engine, "before_cursor_execute", _kill_once)
    assert killed
    assert client.get("/api/v1/me", headers=headers).status_code == 200


def test_every_backend_killed_costs_at_most_one_503(app, runtime, pg_admin):
    client = app.test_client()
    member = make_member(runtime)
    headers = bearer(login(client, runtime, member))
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    name = make_url(str(runtime.database.engine.url)).database

    with pg_admin.connect() as admin:
        admin.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
    statuses = [client.get("/api/v1/me", headers=headers).status_code for _ in range(4)]

    assert statuses.count(503) <= 1 and set(statuses) <= {200, 503}
    assert statuses[-1] == 200


def _terminate_backends_and_wait(admin_engine: Engine, name: str) -> None:
    """Every backend of the test database but the admin's, terminated and gone."""
    others = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"
    )
    with admin_engine.connect() as admin:
        admin.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        for _ in range(200):
            if admin.execute(text(others), {"name": name}).scalar() == 0:
                return
            time.sleep(0.01)
    raise AssertionError("the terminated backends did not go away")


def test_pooled_connections_the_server_closed_are_replaced_unseen(app, runtime, pg_admin):
    """Idle in the pool when PostgreSQL ended them (a restart, a terminated backend): the
    checkout sees the closed socket and opens a new connection, so no request fails."""
    client = app.test_client()
    member = make_member(runtime)
    headers = bearer(login(client, runtime, member))
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    _terminate_backends_and_wait(pg_admin, make_url(str(runtime.database.engine.url)).database)

    statuses = [client.get("/api/v1/me", headers=headers).status_code for _ in range(4)]

    assert statuses == [200] * 4


def test_server_closed_tells_a_live_connection_from_one_the_server_ended(database_url, pg_admin):
    engine = make_engine(database_url)
    try:
        raw = engine.raw_connection()
        dbapi_connection = raw.dbapi_connection
        raw.rollback()
        assert server_closed(dbapi_connection) is False
        _terminate_backends_and_wait(pg_admin, make_url(database_url).database)
        assert server_closed(dbapi_connection) is True
        raw.invalidate()
        raw.close()
        raw = engine.raw_connection()
        assert server_closed(raw.dbapi_connection) is False
        raw.dbapi_connection.close()
        assert server_closed(raw.dbapi_connection) is True
        raw.invalidate()
    finally:
        engine.dispose()


def test_connections_opened_while_read_only_are_discarded_once_it_is_restored(
    app, runtime, pg_admin
):
    """The issue's case: the role was made read-only, then restored; the pool kept its broken
    connections (77 more 500s). Here the database is made read-only (the same session
    setting, ``default_transaction_read_only``) from another connection."""
    client = app.test_client()
    member = make_member(runtime)
    sign_in = {"email": member.email, "password": member.password}
    name = make_url(str(runtime.database.engine.url)).database
    setting = f'ALTER DATABASE "{name}" SET default_transaction_read_only = '
    try:
        with pg_admin.connect() as admin:
            admin.execute(text(setting + "on"))
        runtime.database.engine.dispose()  # the pool's next connections open read-only
        assert_dependency_down(client.post(TOKEN, json=sign_in), "database")
    finally:
        with pg_admin.connect() as admin:
            admin.execute(text(setting + "off"))

    # Restored: the very next request works (before, the pool kept the read-only sessions).
    assert client.post(TOKEN, json=sign_in).status_code == 200
