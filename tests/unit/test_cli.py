"""The ``medchat`` command: one JSON object with ``--json``, exit 0 on success, and a one-line
reason on stderr with a non-zero exit on failure (API.md "Bootstrap and operations").
"""

from __future__ import annotations

import json
import os
import uuid
from importlib import metadata

import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import func, select, text

from medchat import audit
from medchat.cli import build_cli
from medchat.cli.demo import DEMO_ACCOUNTS
from medchat.models import Account, AuditEntry
from medchat.storage.migrate import MIGRATIONS, upgrade
from tests.support.cli import cli_runner

#: Every revision shipped, oldest first, read from the scripts themselves.
REVISIONS = [
    script.revision for script in reversed(list(ScriptDirectory(str(MIGRATIONS)).walk_revisions()))
]
HEAD = REVISIONS[-1]


@pytest.fixture
def cli(app):
    runner = cli_runner(app)

    def invoke(*args: str):
        return runner.invoke(args=list(args))

    return invoke


def one_json_object(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    payload = json.loads(lines[0])
    assert isinstance(payload, dict)
    return payload


def count_accounts(runtime) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(select(func.count()).select_from(Account))


def create_admin(cli, email: str = "root@ops.example.org", *extra: str):
    return cli(
        "create-admin",
        "--email",
        email,
        "--first-name",
        "Ada",
        "--last-name",
        "Quillfeather",
        *extra,
        "--json",
    )


def audit_actions(runtime) -> list[str]:
    with runtime.database.transaction() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


def test_create_admin_prints_id_and_enrollment_token_as_json(cli, runtime):
    result = create_admin(cli)

    assert result.exit_code == 0, result.output
    payload = one_json_object(result.stdout)
    assert set(payload) == {"id", "enrollment_token"}
    assert payload["enrollment_token"]
    assert result.stderr == ""
    with runtime.database.transaction() as session:
        account = session.get(Account, uuid.UUID(payload["id"]))
        assert account is not None
        assert account.role == "admin"
        assert account.status == "pending"


def test_create_admin_with_a_taken_email_exits_1_with_one_line_reason(cli, runtime):
    assert create_admin(cli).exit_code == 0

    result = create_admin(cli, "ROOT@ops.example.org", "--additional")

    assert result.exit_code == 1
    assert result.stdout == ""
    reason = result.stderr.strip()
    assert reason.startswith("error:")
    assert "\n" not in reason
    assert "root@ops.example.org" not in reason.lower()
    assert count_accounts(runtime) == 1


@pytest.mark.parametrize("email", ["notanemail", "root@", "@ops.example.org", "a b@example.org"])
def test_create_admin_refuses_an_address_that_is_not_one(cli, runtime, email):
    result = create_admin(cli, email)

    assert result.exit_code == 1
    assert result.stdout == ""
    reason = result.stderr.strip()
    assert reason.startswith("error: --email:")
    assert "valid email" in reason.lower()
    assert "\n" not in reason
    assert count_accounts(runtime) == 0


def test_create_admin_refuses_a_nul_in_a_name(cli, runtime):
    result = cli(
        "create-admin", "--email", "root@ops.example.org", "--first-name", "A\x00da",
        "--last-name", "Q", "--json",
    )  # fmt: skip

    assert result.exit_code == 1
    assert result.stderr.startswith("error: --first-name:")
    assert count_accounts(runtime) == 0


def test_a_second_admin_needs_additional_and_is_audited_as_one(cli, runtime):
    assert create_admin(cli).exit_code == 0

    refused = create_admin(cli, "second@ops.example.org")

    assert refused.exit_code == 1
    assert refused.stdout == ""
    assert "--additional" in refused.stderr
    assert count_accounts(runtime) == 1
    assert "account.create_additional_admin" not in audit_actions(runtime)

    allowed = create_admin(cli, "second@ops.example.org", "--additional")

    assert allowed.exit_code == 0, allowed.output
    second = uuid.UUID(one_json_object(allowed.stdout)["id"])
    assert count_accounts(runtime) == 2
    with runtime.database.transaction() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "account.create_additional_admin")
        ).one()
        assert entry.target_id == str(second)
        assert entry.actor_role == "cli"
        assert json.loads(entry.details) == {"role": "admin", "existing_admins": 1}
        assert audit.verify(session, runtime.keys.audit_mac).ok


def test_the_first_admin_is_not_marked_additional(cli, runtime):
    assert create_admin(cli, "root@ops.example.org", "--additional").exit_code == 0
    assert audit_actions(runtime) == ["account.create"]


def test_create_admin_without_required_option_fails(cli, runtime):
    result = cli("create-admin", "--email", "x@ops.example.org", "--json")
    assert result.exit_code != 0
    assert count_accounts(runtime) == 0


def test_audit_verify_reports_an_intact_chain(cli):
    assert create_admin(cli).exit_code == 0

    result = cli("audit", "verify", "--json")

    assert result.exit_code == 0, result.output
    payload = one_json_object(result.stdout)
    assert payload["ok"] is True
    assert payload["entries"] >= 1
    assert payload["first_bad"] is None


def test_audit_verify_exits_1_naming_the_tampered_entry(cli, runtime):
    assert create_admin(cli).exit_code == 0
    assert create_admin(cli, "second@ops.example.org", "--additional").exit_code == 0
    with runtime.database.transaction() as session:
        session.execute(text("UPDATE audit_entries SET action = 'tampered' WHERE seq = 1"))

    result = cli("audit", "verify", "--json")

    assert result.exit_code == 1
    payload = one_json_object(result.stdout)
    assert payload["ok"] is False
    assert payload["first_bad"] == 1
    reason = result.stderr.strip()
    assert reason.startswith("error:")
    assert "\n" not in reason


def test_audit_verify_text_output_names_the_broken_entry(cli, runtime):
    assert create_admin(cli).exit_code == 0
    with runtime.database.transaction() as session:
        session.execute(text("DELETE FROM audit_entries WHERE seq = 1"))

    result = cli("audit", "verify")

    assert result.exit_code == 1
    assert "BROKEN at entry 1" in result.stdout


def test_demo_is_idempotent(cli, runtime):
    first = cli("demo", "--json")
    assert first.exit_code == 0, first.output
    accounts = one_json_object(first.stdout)["accounts"]
    assert sorted(a["role"] for a in accounts) == ["admin", "clinician", "compliance", "member"]
    assert {a["email"] for a in accounts} == {spec["email"] for spec in DEMO_ACCOUNTS}
    assert count_accounts(runtime) == 4

    second = cli("demo", "--json")

    assert second.exit_code == 0, second.output
    assert one_json_object(second.stdout)["accounts"] == accounts
    assert count_accounts(runtime) == 4


def test_demo_accounts_can_sign_in(cli, client, runtime):
    accounts = one_json_object(cli("demo", "--json").stdout)["accounts"]
    member = next(a for a in accounts if a["role"] == "member")

    response = client.post(
        "/api/v1/auth/token", json={"email": member["email"], "password": member["password"]}
    )

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["role"] == "member"


def test_db_upgrade_is_idempotent_and_keeps_data(cli, runtime):
    assert create_admin(cli).exit_code == 0

    for _ in range(2):
        result = cli("db", "upgrade", "--json")
        assert result.exit_code == 0, result.output
        assert one_json_object(result.stdout) == {
            "ok": True,
            "from": HEAD,
            "to": HEAD,
            "applied": [],
        }

    assert count_accounts(runtime) == 1
    assert cli("audit", "verify", "--json").exit_code == 0


def test_demo_leaves_one_question_answered_and_one_waiting_once(app, runtime):
    """Issue 13 item 16: ``make run`` says a question is waiting; the Waiting tab shows one."""
    from medchat.cli.demo import ANSWERED, DEMO_ACCOUNTS, WAITING
    from tests.support.accounts import Person, login

    runner = cli_runner(app)
    for _ in range(2):
        assert runner.invoke(args=["demo", "--json"]).exit_code == 0
    client = app.test_client()
    member = DEMO_ACCOUNTS[0]
    tokens = client.post(
        "/api/v1/auth/token", json={"email": member["email"], "password": member["password"]}
    ).get_json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    conversations = client.get("/api/v1/conversations", headers=headers).get_json()["items"]
    by_status = {c["status"]: c for c in conversations}
    assert sorted(by_status) == ["answered", "open"] and len(conversations) == 2
    answered = by_status["answered"]
    messages = client.get(
        f"/api/v1/conversations/{answered['id']}/messages?order=asc", headers=headers
    ).get_json()["items"]
    assert [m["author"] for m in messages] == ["member", "clinician"]
    assert [m["body"] for m in messages] == [ANSWERED["body"], ANSWERED["answer"]]
    assert messages[1]["author_name"] == "Dr. M."
    # The member's access log shows the demo doctor's answer, by display name only.
    log = client.get("/api/v1/me/access-log", headers=headers).get_json()["items"]
    assert [(e["actor"], e["action"], e["conversation_id"]) for e in log] == [
        ("Dr. M.", "reply", answered["id"])
    ]

    # The doctor's queue, as the console's Waiting and Answered tabs list it.
    demo_doctor = next(spec for spec in DEMO_ACCOUNTS if spec["role"] == "clinician")
    secret = one_json_object(runner.invoke(args=["demo", "--json"]).stdout)["accounts"][1][
        "totp_secret"
    ]
    doctor = Person(None, demo_doctor["email"], demo_doctor["password"], "clinician", secret)
    doctor_headers = {"Authorization": f"Bearer {login(client, runtime, doctor)['access_token']}"}

    def queue(status: str) -> list[str]:
        page = client.get(f"/api/v1/clinician/queue?status={status}", headers=doctor_headers)
        assert page.status_code == 200, page.get_json()
        return [item["subject"] for item in page.get_json()["items"]]

    assert queue("open") == [WAITING["subject"]]
    assert queue("answered") == [ANSWERED["subject"]]


def test_version_prints_the_installed_distribution_version_without_an_app(monkeypatch):
    # No app can be built from this environment: --version must not need one.
    monkeypatch.setenv("MEDCHAT_ENV", "production")
    monkeypatch.setenv("MEDCHAT_KEY_DIR", "/nonexistent/medchat-keys")

    result = CliRunner().invoke(build_cli(), ["--version"])

    assert result.exit_code == 0, result.output
    assert result.output == f"medchat {metadata.version('medchat')}\n"


def test_db_current_says_the_migrated_database_is_at_head(cli):
    result = cli("db", "current", "--json")

    assert result.exit_code == 0, result.output
    assert one_json_object(result.stdout) == {"revision": HEAD, "head": HEAD, "is_head": True}
    assert cli("db", "current").stdout == f"{HEAD} (head)\n"


@pytest.fixture
def cli_on(make_app):
    """The CLI of an app on a database of the test's own (SQLite), at any revision."""

    urls = []

    def on(url: str):
        urls.append(url)
        runner = cli_runner(make_app(database_url=url))
        return lambda *args: runner.invoke(args=list(args))

    yield on
    for url in urls:  # the app's teardown empties every table: they must all be there
        upgrade(url)


def test_db_upgrade_of_an_empty_database_says_it_applied_every_revision(cli_on, tmp_path):
    cli = cli_on(f"sqlite:///{tmp_path / 'empty.sqlite3'}")

    before = cli("db", "current", "--json")
    assert before.exit_code == 0, before.output
    assert one_json_object(before.stdout) == {"revision": None, "head": HEAD, "is_head": False}
    assert "empty database" in cli("db", "current").stdout

    result = cli("db", "upgrade")

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"upgraded an empty database to {HEAD}: applied {', '.join(REVISIONS)}\n"
    )
    assert one_json_object(cli("db", "current", "--json").stdout)["is_head"] is True


def test_db_upgrade_from_an_older_revision_says_from_and_to(cli_on, tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    upgrade(url, "0009")  # what an earlier release left
    cli = cli_on(url)

    current = cli("db", "current")
    assert current.exit_code == 0, current.output
    assert current.stdout == f"0009; head is {HEAD}: run 'medchat db upgrade'\n"

    result = cli("db", "upgrade", "--json")

    assert result.exit_code == 0, result.output
    assert one_json_object(result.stdout) == {
        "ok": True,
        "from": "0009",
        "to": HEAD,
        "applied": REVISIONS[REVISIONS.index("0009") + 1 :],
    }
    again = cli("db", "upgrade")
    assert again.stdout == f"database is up to date at {HEAD} (nothing applied)\n"


def test_python_dash_m_medchat_is_the_same_command() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "medchat", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("medchat ")
    listed = subprocess.run(
        [sys.executable, "-m", "medchat", "--help"], capture_output=True, text=True, timeout=60
    )
    for group in ("db", "keys", "archive", "audit", "retention", "demo", "create-admin"):
        assert f"  {group} " in listed.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_db_upgrade_and_current_need_no_server_keys(monkeypatch, tmp_path, backend):
    """Issue 13 item 4: a schema migration reads no key file and no archive-signing pin; the
    first ``db upgrade`` of a host runs before ``keys server-init`` (deploy/bootstrap.sh). In
    production where PostgreSQL is configured (production refuses SQLite), in development on
    SQLite with a key directory that cannot even be made."""
    from tests.support.databases import PG_ENV, fresh_database

    if backend == "postgresql" and not os.environ.get(PG_ENV):
        pytest.skip("production needs PostgreSQL: set MEDCHAT_TEST_DATABASE_URL")
    for name in [n for n in os.environ if n.startswith("MEDCHAT_") and "_TEST_" not in n]:
        monkeypatch.delenv(name)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("MEDCHAT_KEY_DIR", str(blocker / "keys"))
    if backend == "postgresql":
        monkeypatch.setenv("MEDCHAT_ENV", "production")
        monkeypatch.setenv("MEDCHAT_STAFF_NETWORKS", "10.20.0.0/16")
    with fresh_database(backend, tmp_path, migrate=False) as url:
        monkeypatch.setenv("MEDCHAT_DATABASE_URL", url)
        run = lambda *args: CliRunner().invoke(build_cli(), list(args))  # noqa: E731

        before = run("db", "current", "--json")
        assert before.exit_code == 0, before.output
        assert one_json_object(before.stdout)["revision"] is None
        upgraded = run("db", "upgrade", "--json")
        assert upgraded.exit_code == 0, upgraded.output
        assert one_json_object(upgraded.stdout)["applied"] == REVISIONS
        after = run("db", "current", "--json")
        assert one_json_object(after.stdout)["is_head"] is True
    assert not (blocker / "keys").exists()
