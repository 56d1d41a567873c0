"""``medchat keys reseal-content``: format-1 conversations re-sealed with a clinician's keys.

Like ``keys rotate``, it asks for the clinician's password and one-time code (nothing on the
server opens a DEK alone); a wrong one exits 1 and changes nothing. With ``--json`` stdout
carries one JSON object; the prompts and the progress bar go to stderr.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from medchat.models import Conversation
from tests.support.accounts import code_for, make_member
from tests.support.cli import cli_runner
from tests.support.legacy_content import legacy_conversation
from tests.support.messaging import care_team
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql


@pytest.fixture
def world(runtime):
    team = care_team(runtime)
    member = sign_in(runtime, make_member(runtime)).principal
    doctor = sign_in(runtime, team.clinician).principal
    olds = [legacy_conversation(runtime, member, doctor.id, ["Q?", "A."]) for _ in range(3)]
    return team.clinician, olds


@pytest.fixture
def cli(app):
    runner = cli_runner(app)

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(args=list(args), input=input)

    return invoke


def reseal(cli, runtime, person, *extra: str, password: str | None = None):
    runtime.clock.advance(seconds=30)  # a one-time code not used yet
    secrets = f"{password or person.password}\n{code_for(person, runtime)}\n"
    return cli("keys", "reseal-content", "--email", person.email, *extra, input=secrets)


def versions(runtime) -> list[int]:
    with runtime.database.transaction() as session:
        return sorted(session.scalars(select(Conversation.content_version)))


def test_reseal_content_prints_one_json_summary(cli, runtime, world):
    clinician, _ = world
    result = reseal(cli, runtime, clinician, "--json", "--batch", "2")

    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert [json.loads(line) for line in lines] == [
        {"resealed": 3, "refused": [], "remaining": 0, "finished": True}
    ]
    assert "re-sealing content" not in result.stderr
    assert clinician.password not in result.output
    assert versions(runtime) == [2, 2, 2]


def test_reseal_content_shows_progress_and_resumes_after_max_batches(cli, runtime, world):
    clinician, _ = world
    first = reseal(cli, runtime, clinician, "--batch", "2", "--max-batches", "1")

    assert first.exit_code == 0, first.output
    assert "re-sealing content" in first.stderr
    assert "2 conversations re-sealed, 1 left in format 1" in first.stdout
    assert "run again to resume" in first.stdout
    assert versions(runtime) == [1, 2, 2]

    second = reseal(cli, runtime, clinician)
    assert second.exit_code == 0, second.output
    assert "1 conversations re-sealed, 0 left" in second.stdout
    assert versions(runtime) == [2, 2, 2]


def test_reseal_content_with_a_wrong_password_exits_1_and_changes_nothing(cli, runtime, world):
    clinician, _ = world
    result = reseal(cli, runtime, clinician, password="not-the-password")

    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert versions(runtime) == [1, 1, 1]


def test_reseal_content_exits_1_naming_refused_conversations(cli, runtime, world):
    clinician, olds = world
    execute_sql(
        runtime,
        "UPDATE conversations SET key_tag = :tag WHERE id = :id",
        tag=bytes(32),
        id=olds[0].id,
    )
    result = reseal(cli, runtime, clinician, "--json")

    assert result.exit_code == 1
    summary = json.loads(result.stdout.splitlines()[0])
    assert summary["refused"] == [str(olds[0].id)] and summary["resealed"] == 2
    assert "content.reseal_refused" in result.stderr
    assert versions(runtime) == [1, 2, 2]
