"""Fixtures the service tests share: a care team with initialised role keys, and its
clinician's signed-in principal (holding the physician key)."""

from __future__ import annotations

import pytest

from tests.support.messaging import care_team
from tests.support.sessions import sign_in


@pytest.fixture
def team(runtime):
    return care_team(runtime)


@pytest.fixture
def clinician(runtime, team):
    return sign_in(runtime, team.clinician).principal
