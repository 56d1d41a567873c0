"""``medchat keys rotate`` and ``medchat keys status``, and revocations that say a rotation is due.

The rotation asks a current holder for password and one-time code (nothing on the server opens
a DEK alone); a wrong one exits 1 with a one-line reason and changes nothing. With ``--json``
stdout carries one JSON object, the prompts and the progress bar go to stderr.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from access_control.roles import Role
from medchat.models import RoleKey, RoleKeyRotation
from tests.support.accounts import bearer, code_for, login, make_staff
from tests.support.cli import cli_runner
from tests.support.rotation import physician_keys, readable_by, rotation_world, statuses
from tests.support.sessions import sign_in


@pytest.fixture
def world(runtime):
    return rotation_world(runtime, conversations=4, members=2)


@pytest.fixture
def cli(app):
    runner = cli_runner(app)

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(args=list(args), input=input)

    return invoke


def one_json_object(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return json.loads(lines[0])


def credentials(runtime, person, *, password: str | None = None, code: str | None = None) -> str:
    runtime.clock.advance(seconds=30)  # a one-time code not used yet
    return f"{password or person.password}\n{code or code_for(person, runtime)}\n"


def rotate(cli, runtime, person, *extra: str, **wrong: str):
    return cli(
        "keys",
        "rotate",
        "--role",
        "physician",
        "--email",
        person.email,
        *extra,
        input=credentials(runtime, person, **wrong),
    )


def rotation_rows(runtime) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(select(func.count()).select_from(RoleKeyRotation))


def test_keys_rotate_prints_one_json_summary(cli, runtime, world):
    result = rotate(cli, runtime, world.clinician, "--json", "--batch", "3")

    assert result.exit_code == 0, result.output
    assert one_json_object(result.stdout) == {
        "role": "physician",
        "from_version": 1,
        "to_version": 2,
        "resealed": 4,
        "grants": 2,
        "retired": True,
    }
    assert "re-sealing" not in result.stderr  # no progress bar with --json
    assert world.clinician.password not in result.output
    assert statuses(runtime) == {1: "retired", 2: "active"}
    keyring = sign_in(runtime, world.colleague).principal.keyring
    assert readable_by(runtime, keyring, world.deks) == 4


def test_keys_rotate_shows_progress_on_stderr_and_a_summary_on_stdout(cli, runtime, world):
    result = rotate(cli, runtime, world.clinician, "--batch", "2")

    assert result.exit_code == 0, result.output
    assert "re-sealing wraps" in result.stderr
    assert "v1 -> v2" in result.stdout and "4 wraps re-sealed" in result.stdout
    assert "retired and unpinned" in result.stdout


def test_keys_rotate_asks_for_the_email_when_not_given(cli, runtime, world):
    result = cli(
        "keys",
        "rotate",
        "--role",
        "physician",
        "--json",
        input=f"{world.clinician.email}\n" + credentials(runtime, world.clinician),
    )
    assert result.exit_code == 0, result.output
    assert one_json_object(result.stdout)["retired"] is True


@pytest.mark.parametrize(
    "wrong",
    [{"password": "not-the-password-at-all"}, {"code": "000000"}],
    ids=["password", "totp"],
)
def test_keys_rotate_with_wrong_credentials_exits_1_and_changes_nothing(cli, runtime, world, wrong):
    before = runtime.pins.current()["physician"]

    result = rotate(cli, runtime, world.clinician, "--json", **wrong)

    assert result.exit_code == 1
    assert result.stdout == ""
    reason = result.stderr.strip().splitlines()[-1]
    assert reason.startswith("error:")
    assert statuses(runtime) == {1: "active"}
    assert rotation_rows(runtime) == 0
    assert runtime.pins.current()["physician"] == before


def test_keys_rotate_by_a_clinician_without_the_key_exits_1(cli, runtime, world):
    outsider = make_staff(runtime, Role.CLINICIAN)

    result = rotate(cli, runtime, outsider, "--json")

    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: Your session does not hold")
    assert rotation_rows(runtime) == 0


def test_keys_rotate_prepare_only_stops_before_activation_and_a_rerun_finishes(cli, runtime, world):
    prepared = rotate(cli, runtime, world.clinician, "--prepare-only", "--json")

    assert prepared.exit_code == 0, prepared.output
    assert one_json_object(prepared.stdout)["retired"] is False
    assert statuses(runtime) == {1: "active", 2: "pending"}

    finished = rotate(cli, runtime, world.colleague, "--json")

    assert finished.exit_code == 0, finished.output
    assert one_json_object(finished.stdout)["resealed"] == 4
    assert statuses(runtime) == {1: "retired", 2: "active"}


def test_keys_status_counts_wraps_and_holders_per_version(cli, runtime, world):
    result = cli("keys", "status", "--json")

    assert result.exit_code == 0, result.output
    payload = one_json_object(result.stdout)
    versions = {(v["role"], v["version"]): v for v in payload["versions"]}
    physician = versions[("physician", 1)]
    assert (physician["status"], physician["wraps"], physician["holders"]) == ("active", 4, 2)
    assert physician["pinned"] is True and physician["rotation_due_since"] is None
    assert (versions[("archive", 1)]["wraps"], versions[("archive", 1)]["holders"]) == (4, 1)
    assert payload["rotations"] == []
    text = cli("keys", "status")
    assert "physician v1" in text.stdout and "wraps: 4" in text.stdout


def test_a_revocation_answers_rotation_due_and_keys_status_shows_it_until_rotated(
    cli, client, runtime, world
):
    doctor = login(client, runtime, world.clinician)

    response = client.delete(
        f"/api/v1/clinician/colleagues/{world.colleague.id}/grant",
        json={"password": world.clinician.password},
        headers=bearer(doctor),
    )

    assert response.status_code == 204
    assert response.headers["Medchat-Rotation-Due"] == "physician"
    status = one_json_object(cli("keys", "status", "--json").stdout)
    physician, successor = [v for v in status["versions"] if v["role"] == "physician"]
    # The successor the revocation made takes new epochs until the rotation retires it.
    assert (successor["version"], successor["status"], successor["pinned"]) == (
        2,
        "successor",
        False,
    )
    assert physician["rotation_due_reason"] == "grant_revoked"
    assert physician["rotation_due_since"] == runtime.clock.now().isoformat()
    assert "ROTATION DUE" in cli("keys", "status").stdout

    assert rotate(cli, runtime, world.clinician, "--json").exit_code == 0

    status = one_json_object(cli("keys", "status", "--json").stdout)
    current = [v for v in status["versions"] if v["role"] == "physician" and v["version"] == 3]
    assert current[0]["rotation_due_since"] is None
    assert [v["status"] for v in status["versions"] if v["role"] == "physician"] == [
        "retired",
        "retired",
        "active",
    ]
    assert "ROTATION DUE" not in cli("keys", "status").stdout


def test_disabling_a_holder_answers_rotation_due_and_a_member_does_not(cli, client, runtime, world):
    admin = bearer(login(client, runtime, make_staff(runtime, Role.ADMIN)))

    holder = client.post(f"/api/v1/admin/accounts/{world.colleague.id}/disable", headers=admin)
    member = client.post(f"/api/v1/admin/accounts/{world.members[0].id}/disable", headers=admin)

    assert holder.status_code == 204
    assert holder.headers["Medchat-Rotation-Due"] == "physician"
    assert member.status_code == 204
    assert "Medchat-Rotation-Due" not in member.headers
    entry, successor = [
        v
        for v in one_json_object(cli("keys", "status", "--json").stdout)["versions"]
        if v["role"] == "physician"
    ]
    assert entry["rotation_due_reason"] == "account_disabled"
    assert entry["holders"] == 1
    assert (successor["status"], successor["holders"]) == ("successor", 1)


def test_an_unfinished_rotation_shows_its_progress(cli, runtime, world):
    from tests.support.rotation import rotate as rotate_service

    rotate_service(runtime, world.clinician, batch_size=1, max_batches=3)

    status = one_json_object(cli("keys", "status", "--json").stdout)

    [progress] = status["rotations"]
    assert (progress["from_version"], progress["to_version"]) == (1, 2)
    assert (progress["resealed"], progress["remaining"]) == (3, 1)
    assert "rotation physician v1 -> v2 (re-sealing): 3 re-sealed, 1 left" in (
        cli("keys", "status").stdout
    )
    with runtime.database.transaction() as session:
        assert len(session.scalars(select(RoleKey)).all()) == 3
    assert physician_keys(runtime)[2].status == "active"
