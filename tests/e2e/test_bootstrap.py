"""The production bootstrap of one host, run exactly as ``deploy/bootstrap.sh`` writes it
(issue 13 item 4), ending with a clinician reading a member's question.

Every line of the script's sequence (``tests.support.bootstrap_sequence``) is run in order:

- ``deploy/bootstrap.sh STAGE ...`` lines verbatim, by bash, as subprocesses that run the
  installed ``medchat`` console script (this interpreter's), against a PostgreSQL database and
  two roles made for this test under unique names (dropped after it), with the configuration
  of ``deploy/systemd/medchat.env.example`` (``MEDCHAT_ENV=production``, real bcrypt 12 and
  scrypt 2^17 costs), only the host-specific values filled in;
- ``systemctl enable --now medchat`` as the unit says (``deploy/systemd/medchat.service``):
  its ``ExecStartPre`` and its ``ExecStart`` (gunicorn with ``deploy/gunicorn.conf.py``),
  with the unit's environment file;
- the ``# people:`` lines over the API, as the staff would in the console or with curl.

What the test changes, and why: ``systemd-run --uid=medchat`` (``MEDCHAT_RUN_AS_SERVICE``) is
a small stand-in that runs the command as this test's user with only the environment files'
variables, as systemd does (no systemd, no ``medchat`` user here); the superuser's psql is the
test server's (``MEDCHAT_PSQL``); the release directory is the checkout. An unknown line in
the sequence fails the test, so a step added to the script is a step this test must run.

``-s`` shows each line and what it printed. Skipped, saying why, without
``MEDCHAT_TEST_DATABASE_URL`` or without ``psql`` (``.ci/run`` installs it, ``make psql-deps``,
and sets ``MEDCHAT_REQUIRE_PSQL``, so there it fails instead). About 90 s, most of it the real
password costs (bcrypt 12, scrypt 2^17) of six enrollments and sign-ins.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from medchat.clock import SystemClock
from tests.support.bootstrap_sequence import ROOT, RUN_AS, env_file, group, sequence, show, user
from tests.support.databases import PG_ENV
from tests.support.hosts import Host, free_port
from tests.support.messaging import CONSENT_VERSION

pytestmark = [
    pytest.mark.bootstrap,
    pytest.mark.skipif(
        not os.environ.get(PG_ENV),
        reason="the bootstrap runs against PostgreSQL: set MEDCHAT_TEST_DATABASE_URL "
        "(as .ci/run does)",
    ),
    pytest.mark.skipif(
        shutil.which("psql") is None and not os.environ.get("MEDCHAT_REQUIRE_PSQL"),
        reason="deploy/bootstrap.sh runs psql: install Debian's postgresql-client (make psql-deps)",
    ),
]

UNIT = ROOT / "deploy" / "systemd" / "medchat.service"
PASSWORD = {
    "admin": "quarry-velvet-hinge-1973-orbit",
    "clinician": "marble-tundra-kettle-2041-plume",
    "compliance": "saffron-ledger-pylon-1866-drift",
    "member": "cobalt-meadow-riddle-1958-spool",
}
QUESTION = "A dry cough for three weeks, worse at night. Should I worry?"


class Bootstrap:
    """One host being bootstrapped: its files, the script's environment, the server."""

    def __init__(self, workdir: Path) -> None:
        admin = make_url(os.environ[PG_ENV])
        suffix = secrets.token_hex(4)
        self.database = f"medchat_boot_{suffix}"
        self.owner, self.app = f"medchat_boot_owner_{suffix}", f"medchat_boot_app_{suffix}"
        self.admin_url = admin.set(drivername="postgresql+psycopg")
        self.workdir = workdir
        self.env_file = workdir / "medchat.env"
        self.keys = workdir / "keys"
        self.port = free_port()
        redis = os.environ.get("MEDCHAT_TEST_RATELIMIT_STORAGE_URI", "")
        env_file(
            self.env_file,
            {
                "PGSSLROOTCERT": None,  # the test server speaks no TLS
                "MEDCHAT_KEY_DIR": str(self.keys),
                "MEDCHAT_STAFF_NETWORKS": "127.0.0.0/8",
                "MEDCHAT_RATELIMIT_STORAGE_URI": redis if redis.startswith("redis") else None,
                "MEDCHAT_RATELIMIT_KEY_PREFIX": f"medchat-boot-{suffix}",
                "MEDCHAT_MAIL_URL": f"file://{workdir / 'mail'}",
                "MEDCHAT_BIND": f"127.0.0.1:{self.port}",
                "MEDCHAT_WORKERS": "1",
            },
        )
        run_as = workdir / "run-as"
        run_as.write_text(f"#!{sys.executable}\n{RUN_AS}")
        run_as.chmod(0o755)
        psql = ["psql", "-X", "-h", admin.host or "127.0.0.1", "-p", str(admin.port or 5432)]
        psql += ["-U", admin.username or "postgres"]
        owner_env = workdir / "medchat-owner.env"
        self.script_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MEDCHAT_")},
            "PYTHONPATH": str(ROOT),
            "MEDCHAT_HOME": str(ROOT),
            "MEDCHAT_ENV_FILE": str(self.env_file),
            "MEDCHAT_OWNER_ENV_FILE": str(owner_env),
            "MEDCHAT_BIN": str(Path(sys.executable).parent / "medchat"),
            "MEDCHAT_SERVICE_USER": user(),
            "MEDCHAT_SERVICE_GROUP": group(),
            "MEDCHAT_DB_NAME": self.database,
            "MEDCHAT_DB_OWNER": self.owner,
            "MEDCHAT_DB_APP": self.app,
            "MEDCHAT_DB_HOST": admin.host or "127.0.0.1",
            "MEDCHAT_DB_PORT": str(admin.port or 5432),
            "MEDCHAT_PSQL": shlex.join(psql),
            "MEDCHAT_RUN_AS_SERVICE": f"{run_as} {self.env_file} --",
            "MEDCHAT_RUN_AS_OWNER": f"{run_as} {self.env_file} {owner_env} --",
            "ADMIN_EMAIL": "ops-lead@clinic.example.org",
            "ADMIN_FIRST_NAME": "Rosalind",
            "ADMIN_LAST_NAME": "Okonkwo",
            "CLINICIAN_EMAIL": "first-doctor@clinic.example.org",
            "OFFICER_EMAIL": "first-officer@clinic.example.org",
        }
        if admin.password:
            self.script_env["PGPASSWORD"] = admin.password
        self.server: Host | None = None
        self.outputs: dict[str, str] = {}
        self.staff: dict[str, dict[str, str]] = {}

    # -- the lines of the sequence ------------------------------------------------------------

    def run(self, step: str) -> None:
        if step.startswith("deploy/bootstrap.sh "):
            self.script(step)
        elif step == "systemctl enable --now medchat":
            self.start_service(step)
        elif step.startswith("# people: the admin enrolls"):
            self.enroll("admin", self.outputs["admin"], step)
        elif step.startswith("# people: the admin signs in and creates"):
            self.create_staff(step)
        else:
            pytest.fail(f"a step of deploy/bootstrap.sh this test does not run: {step}")

    def script(self, step: str) -> None:
        done = subprocess.run(
            ["bash", "-c", step],
            cwd=ROOT,
            env=self.script_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
        show(step, done.stdout)
        assert done.returncode == 0, f"{step} exited {done.returncode}"
        self.outputs[step.split()[1]] = done.stdout

    def start_service(self, step: str) -> None:
        """``ExecStartPre`` then ``ExecStart`` of the unit, with its environment file."""
        commands = {}
        for line in UNIT.read_text().splitlines():
            if line.startswith(("ExecStartPre=", "ExecStart=")):
                key, command = line.split("=", 1)
                commands[key] = self._local(command)
        run_as = shlex.split(self.script_env["MEDCHAT_RUN_AS_SERVICE"])
        env = {**self.script_env}
        pre = subprocess.run(
            [*run_as, *commands["ExecStartPre"]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        show(f"{step}  (ExecStartPre: {' '.join(commands['ExecStartPre'])})", pre.stdout)
        assert pre.returncode == 0
        log = self.workdir / "medchat.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [*run_as, *commands["ExecStart"]],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.server = Host("medchat", self.port, process, log)
        self.server.wait_ready(timeout=90)
        show(f"(ExecStart: {' '.join(commands['ExecStart'])})", "GET /readyz: 200 ready")

    def _local(self, command: str) -> list[str]:
        """The unit's command for this checkout: its venv's console scripts, its files."""
        words = shlex.split(command)
        program = Path(words[0]).name
        if program == "gunicorn":
            words = [sys.executable, "-m", "gunicorn", *words[1:]]
        else:
            words = [self.script_env["MEDCHAT_BIN"], *words[1:]]
        return [word.replace("/opt/medchat", str(ROOT)) for word in words]

    def enroll(self, role: str, printed: str, step: str | None = None) -> None:
        token = re.search(
            r"enrollment token \(shown once\): (\S+)|\"enrollment_token\": \"([^\"]+)\"", printed
        )
        assert token, printed
        enrollment = token.group(1) or token.group(2)
        started = self.call(
            "POST",
            "/api/v1/auth/enroll",
            {"enrollment_token": enrollment, "password": PASSWORD[role]},
        )
        assert started.status == 200, started.body
        secret = re.search(r"secret=([A-Z2-7]+)", started.body["provisioning_uri"]).group(1)
        code = pyotp.TOTP(secret).now()
        confirmed = self.call(
            "POST",
            "/api/v1/auth/enroll/confirm",
            {"enrollment_token": enrollment, "totp_code": code},
        )
        assert confirmed.status == 200, confirmed.body
        self.staff[role] = {"secret": secret}
        if step:
            show(
                step,
                f"POST /api/v1/auth/enroll, /enroll/confirm ({role}): 200, "
                f"{len(confirmed.body['recovery_codes'])} recovery codes",
            )

    def sign_in_staff(self, role: str, email: str) -> str:
        # The enrollment spent this step's code; the next step's is fresh (one step of drift).
        code = pyotp.TOTP(self.staff[role]["secret"]).at(
            SystemClock().now() + timedelta(seconds=30)
        )
        signed = self.call(
            "POST",
            "/api/v1/auth/token",
            {"email": email, "password": PASSWORD[role], "totp_code": code},
        )
        assert signed.status == 200, signed.body
        return str(signed.body["access_token"])

    def create_staff(self, step: str) -> None:
        token = self.sign_in_staff("admin", self.script_env["ADMIN_EMAIL"])
        said = []
        for role, email, first, last in (
            ("clinician", self.script_env["CLINICIAN_EMAIL"], "Imre", "Vasquez-Lind"),
            ("compliance", self.script_env["OFFICER_EMAIL"], "Thandiwe", "Marchetti"),
        ):
            created = self.call(
                "POST",
                "/api/v1/admin/accounts",
                {"email": email, "role": role, "first_name": first, "last_name": last},
                token=token,
            )
            assert created.status == 201, created.body
            self.enroll(role, json.dumps(created.body))
            said.append(f"POST /api/v1/admin/accounts ({role}): 201; enrolled")
        show(step, "\n".join(said))

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        assert self.server is not None, "the service is not started yet"
        return self.server.call(method, path, body, token=token)

    # -- cleanup --------------------------------------------------------------------------------

    def drop(self) -> None:
        if self.server is not None:
            self.server.stop()
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
                for role in (self.owner, self.app):
                    connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        finally:
            engine.dispose()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Bootstrap]:
    bootstrap = Bootstrap(tmp_path)
    try:
        yield bootstrap
    finally:
        bootstrap.drop()


def test_the_documented_bootstrap_ends_with_a_clinician_reading_a_members_question(host):
    for step in sequence():
        host.run(step)

    # What the sequence left: keys owned by the service user, read-only, the pin written;
    # the service role cannot rewrite the audit log.
    mode = stat.S_IMODE(host.keys.stat().st_mode)
    assert (mode, host.keys.owner()) == (0o700, user())
    assert {stat.S_IMODE(p.stat().st_mode) for p in host.keys.glob("*.key")} == {0o400}
    assert (host.keys / "role-pins.json").exists()
    assert re.search(
        r"^MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY=[0-9a-f]{64}$", host.env_file.read_text(), re.M
    )
    assert f"{host.app}:" in host.env_file.read_text()
    assert host.owner not in host.env_file.read_text()
    engine = create_engine(host.admin_url.set(database=host.database))
    try:
        with engine.connect() as connection:
            rights = connection.execute(
                text(
                    "SELECT has_table_privilege(:r, 'audit_entries', 'UPDATE'),"
                    " has_table_privilege(:r, 'audit_entries', 'INSERT')"
                ),
                {"r": host.app},
            ).one()
    finally:
        engine.dispose()
    assert tuple(rights) == (False, True)

    # A member registers, consents and asks; the first clinician reads the question.
    member = {"email": "first-member@mail.example.org", "password": PASSWORD["member"]}
    registered = host.call(
        "POST",
        "/api/v1/auth/register",
        {
            **member,
            "first_name": "Ottilie",
            "last_name": "Brandvold",
            "birth_date": "1979-06-02",
            "sex": "female",
        },
    )
    assert registered.status == 202, registered.body
    signed = host.call("POST", "/api/v1/auth/token", member)
    assert signed.status == 200, signed.body
    token = signed.body["access_token"]
    # As the app does: the consent text and the emergency notice the server serves now.
    served = host.call("GET", "/api/v1/consent")
    assert served.status == 200 and served.body["version"] == CONSENT_VERSION, served.body
    consent = {"health_messaging": True, "version": served.body["version"]}
    assert host.call("PUT", "/api/v1/me/consent", consent, token=token).status == 200
    service = host.call("GET", "/api/v1/service")
    assert service.status == 200, service.body
    question = {"body": QUESTION, "emergency_notice": service.body["emergency_notice"]["version"]}
    asked = host.call("POST", "/api/v1/conversations", question, token=token)
    assert asked.status == 201, asked.body

    doctor = host.sign_in_staff("clinician", host.script_env["CLINICIAN_EMAIL"])
    queue = host.call("GET", "/api/v1/clinician/queue?status=open", token=doctor)
    assert queue.status == 200, queue.body
    assert [item["id"] for item in queue.body["items"]] == [asked.body["id"]]
    messages = host.call(
        "GET", f"/api/v1/clinician/conversations/{asked.body['id']}/messages", token=doctor
    )
    assert messages.status == 200, messages.body
    assert [m["body"] for m in messages.body["items"]] == [QUESTION]
    show(
        "a member registers, consents and asks; the clinician signs in (password and TOTP)",
        f"GET /api/v1/clinician/conversations/{{id}}/messages: 200, read: {QUESTION!r}",
    )
