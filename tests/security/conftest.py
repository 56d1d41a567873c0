"""Fixtures of the planted-row tests (``test_planted_rows.py`` and
``test_planted_rows_server_work.py``): the world they attack and the login the attacker
writes with."""

from __future__ import annotations

import pytest

from medchat.services.context import ServiceContext
from tests.support.planted_world import World, app_role, build_world


@pytest.fixture
def planted_world(client, runtime: ServiceContext) -> World:
    """A row in every tagged table, each made by the server itself."""
    return build_world(client, runtime)


@pytest.fixture
def as_app_role(runtime: ServiceContext) -> str | None:
    """The role the attacker's SQL runs as: the application's own login on PostgreSQL."""
    return app_role(runtime)
