"""``medchat retention run``: the contract of API.md ("Bootstrap and operations"): one JSON
object with the three counts, ``--as-of`` parsed strictly (a bad one exits 2 with a one-line
reason and changes nothing), ``--dry-run`` listing without changing, ``--batch``, a progress
bar on stderr, and everything audited so ``medchat audit verify`` still passes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from medchat.cli.retention import parse_as_of
from medchat.models import AuthToken, EnrollmentToken
from tests.support.accounts import make_member
from tests.support.archive import seal
from tests.support.audit import audit_entries
from tests.support.cli import cli_runner
from tests.support.conversations import start_conversation
from tests.support.messaging import care_team
from tests.support.retention import stored_rows
from tests.support.sessions import sign_in

LIVE = timedelta(days=730)


@pytest.fixture
def cli(app):
    runner = cli_runner(app)

    def invoke(*args: str, **kwargs):
        return runner.invoke(args=list(args), **kwargs)

    return invoke


@pytest.fixture
def member(runtime):
    care_team(runtime)
    return sign_in(runtime, make_member(runtime)).principal


def asked(runtime, member):
    return start_conversation(runtime, member, subject="Elbow", bodies=["It hurts"]).id


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_run_prints_one_json_object_with_the_three_counts(cli, runtime, clock, member):
    conversation_id = asked(runtime, member)
    clock.advance(days=LIVE.days * 2)

    result = cli("retention", "run", "--as-of", iso(clock.now()), "--json")

    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {
        k: payload[k]
        for k in ("conversations_destroyed", "conversations_sealed", "archive_records_destroyed")
    } == {"conversations_destroyed": 1, "conversations_sealed": 0, "archive_records_destroyed": 0}
    assert payload["dry_run"] is False and "due" not in payload
    assert payload["as_of"] == iso(clock.now())
    assert stored_rows(runtime, conversation_id)["conversations"] == 0
    assert result.stderr == ""  # no progress bar with --json


def test_run_without_as_of_uses_the_clock_and_a_second_run_finds_nothing(
    cli, runtime, clock, member
):
    asked(runtime, member)
    clock.advance(days=731)

    first = json.loads(cli("retention", "run", "--json").stdout)
    second = json.loads(cli("retention", "run", "--json").stdout)

    assert first["conversations_destroyed"] == 1
    assert second["conversations_destroyed"] == 0
    assert [e.action for e in audit_entries(runtime, prefix="retention.")] == [
        "retention.destroy",
        "retention.run",
        "retention.run",
    ]
    assert all(e.actor_role == "cli" for e in audit_entries(runtime, prefix="retention."))


def test_text_output_and_a_progress_bar_on_stderr(cli, runtime, clock, member):
    for _ in range(3):
        asked(runtime, member)

    clock.advance(days=LIVE.days * 2)
    result = cli("retention", "run", "--as-of", iso(clock.now()), "--batch", "2")

    assert result.exit_code == 0, result.output
    assert "3 conversations were destroyed" in result.stdout
    # Outside a terminal click draws only the label; in one, the bar and "3/3" follow it.
    assert "retention: items handled" in result.stderr


def test_dry_run_lists_what_would_go_and_changes_nothing(cli, runtime, clock, member):
    conversation_id = asked(runtime, member)
    record = seal(runtime, member, asked(runtime, member))
    as_of = clock.now() + timedelta(days=3651)

    result = cli("retention", "run", "--dry-run", "--as-of", iso(as_of), "--json")

    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["dry_run"] is True
    assert (payload["conversations_destroyed"], payload["archive_records_destroyed"]) == (1, 1)
    assert {(d["kind"], d["conversation_id"], d["record_id"]) for d in payload["due"]} == {
        ("destroy", str(conversation_id), None),
        ("archive_destroy", str(record.conversation_id), str(record.id)),
    }
    assert all(d["due_at"].endswith("Z") for d in payload["due"])
    assert stored_rows(runtime, conversation_id)["messages"] == 1
    assert stored_rows(runtime, record.conversation_id)["messages"] == 1
    assert [e.action for e in audit_entries(runtime, prefix="retention.")] == ["retention.dry_run"]
    text = cli("retention", "run", "--dry-run", "--as-of", iso(as_of))
    assert f"destroy         conversation {conversation_id}" in text.stdout
    assert "would be destroyed" in text.stdout


def test_the_run_deletes_expired_token_rows_and_prints_their_counts(cli, runtime, clock, member):
    """``medchat retention run`` also runs the token purge (``docs/retention.md``)."""
    with runtime.database.transaction() as session:
        enrollments = session.scalar(select(func.count()).select_from(EnrollmentToken))
    assert enrollments  # the care team's staff enrolled: their tokens are spent
    clock.advance(days=31)  # past the member's sign-in family (30 days)
    expected = {
        "auth_tokens_deleted": 2,
        "old_keyring_tokens_deleted": 0,
        "password_reset_tokens_deleted": 0,
        "enrollment_tokens_deleted": enrollments,
    }

    dry = json.loads(cli("retention", "run", "--dry-run", "--json").stdout)
    assert {k: dry[k] for k in expected} == expected
    with runtime.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(AuthToken)) == 2
    result = cli("retention", "run", "--json")

    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {k: payload[k] for k in expected} == expected
    with runtime.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(AuthToken)) == 0
        assert session.scalar(select(func.count()).select_from(EnrollmentToken)) == 0
    (entry,) = audit_entries(runtime, "auth.token_purge")
    assert entry.actor_role == "cli"
    text = cli("retention", "run").stdout
    assert "0 expired token rows were deleted" in text


@pytest.mark.parametrize(
    "value",
    ["yesterday", "2029-13-01T00:00:00Z", "2029-01-01T00:00:00", "2029-01-01", ""],
    ids=["word", "month-13", "no-zone", "date-only", "empty"],
)
def test_a_bad_as_of_exits_2_with_one_line_and_changes_nothing(cli, runtime, clock, member, value):
    conversation_id = asked(runtime, member)

    result = cli("retention", "run", "--as-of", value, "--json")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--as-of" in result.stderr and "2029-01-01T00:00:00Z" in result.stderr
    assert stored_rows(runtime, conversation_id)["conversations"] == 1
    assert audit_entries(runtime, prefix="retention.") == []


@pytest.mark.parametrize("value", ["0", "-1", "20001", "many"])
def test_a_bad_batch_is_refused(cli, runtime, member, value):
    conversation_id = asked(runtime, member)
    result = cli("retention", "run", "--batch", value, "--as-of", "2099-01-01T00:00:00Z")
    assert result.exit_code == 2
    assert stored_rows(runtime, conversation_id)["conversations"] == 1


def test_a_run_as_of_a_later_time_than_now_is_refused_and_changes_nothing(
    cli, runtime, clock, member
):
    """Looking ahead is for dry runs: a run as of next year would destroy early."""
    conversation_id = asked(runtime, member)
    later = clock.now() + LIVE * 2

    result = cli("retention", "run", "--as-of", iso(later), "--json")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "later than now" in result.stderr and "--dry-run" in result.stderr
    assert stored_rows(runtime, conversation_id)["conversations"] == 1
    assert audit_entries(runtime, prefix="retention.") == []
    preview = cli("retention", "run", "--dry-run", "--as-of", iso(later), "--json")
    assert json.loads(preview.stdout)["conversations_destroyed"] == 1
    assert stored_rows(runtime, conversation_id)["conversations"] == 1


def test_as_of_accepts_an_offset_and_means_the_same_instant():
    assert parse_as_of("2029-01-01T01:00:00+01:00") == datetime(2029, 1, 1, tzinfo=UTC)
    assert parse_as_of("2029-01-01T00:00:00Z") == datetime(2029, 1, 1, tzinfo=UTC)


def test_seal_first_setting_seals_and_the_audit_chain_verifies(make_app, clock):
    app = make_app(retention_seal_expired=True)
    runtime = app.extensions["medchat"]
    care_team(runtime)
    member = sign_in(runtime, make_member(runtime)).principal
    asked(runtime, member)
    runner = cli_runner(app)

    clock.advance(days=LIVE.days * 2)
    result = runner.invoke(args=["retention", "run", "--json"])

    payload = json.loads(result.stdout)
    assert (payload["conversations_sealed"], payload["conversations_destroyed"]) == (1, 0)
    assert payload["seal_expired"] is True
    verified = runner.invoke(args=["audit", "verify", "--json"])
    assert verified.exit_code == 0 and json.loads(verified.stdout)["ok"] is True
    archive = runner.invoke(args=["archive", "verify", "--json"])
    assert json.loads(archive.stdout)["records"] == 1


def test_archive_content_failing_its_check_exits_1_naming_it(cli, runtime, clock, member):
    from tests.support.archive import flip_byte

    record = seal(runtime, member, asked(runtime, member))
    flip_byte(runtime, "conversations", "subject_ciphertext", record.conversation_id)

    clock.advance(days=3651)
    result = cli("retention", "run", "--json")

    assert result.exit_code == 1
    assert json.loads(result.stdout)["archive_records_refused"] == 1
    assert "integrity" in result.stderr
    assert stored_rows(runtime, record.conversation_id)["conversations"] == 1
