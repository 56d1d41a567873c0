"""The contract test's world: an app on a migrated database (``tests/conftest.py``), the care
team holding the role keys, and a member who consented and asked a question, so that lists,
queues and the export have something in them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask

from tests.contract.harness import RoleAuth
from tests.support.accounts import Person, make_member
from tests.support.messaging import asked, care_team, give_consent
from tests.support.sessions import sign_in

#: Fresh sign-ins set aside per role for the logouts of a run (each ends its own session).
#: A staff sign-in moves the test clock one TOTP step (30 s): 20 of them stay well inside
#: the access tokens' 15 minutes.
SPARE_TOKENS = 20


@dataclass
class World:
    app: Flask
    people: dict[str, Person]

    def auth(self, role: str) -> RoleAuth:
        """The role's token and spare ones, signed in through the service before the run
        (a run's wrong passwords may lock the account against later sign-ins); the main
        token last, so the clock has moved least since it was issued."""
        runtime = self.app.extensions["medchat"]
        person = self.people[role]
        tokens = [sign_in(runtime, person).tokens.access_token for _ in range(SPARE_TOKENS + 1)]
        return RoleAuth(tokens[-1], tokens[:-1])


@pytest.fixture
def world(app: Flask, runtime: Any) -> World:
    team = care_team(runtime)
    member = make_member(runtime)
    client = app.test_client()
    tokens = {"access_token": sign_in(runtime, member).tokens.access_token}
    give_consent(client, tokens)
    asked(client, tokens, "A first question, so that lists have an item.")
    return World(
        app, {"member": member, "clinician": team.clinician, "compliance": team.compliance}
    )
