"""What the long-job benchmarks share (``bench.rotation``, ``bench.retention``).

Each makes the care team and members in-process on a fresh database (``Setup``), hands the
public keys to the processes that make conversations (``Recipients``), and measures a
clinician's reads against gunicorn while its job runs (``_reader``, ``latency``).
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from bench.environment import Environment
from bench.report import percentile
from bench.seed import call, expect

STAFF_PASSWORD = "fennel-orbit-cascade-17"  # noqa: S105 (throw-away accounts, dropped at the end)
MEMBER_PASSWORD = "quokka-harbor-lantern-42"  # noqa: S105


@dataclass(frozen=True)
class Recipients:
    """Public material the wrap makers need (no private key leaves the main process)."""

    key_dir: str
    physician: tuple[uuid.UUID, bytes, bytes]  # row id, key id, public key
    archive: tuple[uuid.UUID, bytes, bytes]
    members: tuple[tuple[uuid.UUID, bytes, bytes], ...]  # account id, key id, public key


class Setup:
    """Accounts, role keys and conversations, made in-process on the run's database."""

    def __init__(self, env: Environment) -> None:
        from medchat.config import Settings
        from medchat.services.context import build_service_context

        self.env = env
        self.runtime = build_service_context(Settings.from_env(environ=env.medchat_env()))
        self.staff: dict[str, tuple[uuid.UUID, str, str]] = {}  # name -> id, email, totp secret

    def close(self) -> None:
        self.runtime.database.dispose()

    def _context(self, session: Any) -> None:
        from medchat import audit

        audit.set_context(session, audit.AuditContext(actor_role="cli", address="bench"))

    def staff_and_keys(self) -> None:
        """Two clinicians holding the physician key, a compliance officer holding the archive."""
        import pyotp

        from access_control.roles import Role
        from medchat.identity.principal import Principal
        from medchat.models import KeyRole
        from medchat.services.accounts import AccountService
        from medchat.services.role_keys import RoleKeyService

        for name, role in (
            ("starter", Role.CLINICIAN),
            ("reader", Role.CLINICIAN),
            ("compliance", Role.COMPLIANCE),
        ):
            email = f"{name}@rotation.bench.test"
            with self.runtime.database.transaction() as session:
                self._context(session)
                service = AccountService(session, self.runtime)
                account, token = service.create_staff(
                    email=email, role=role, first_name=name.title(), last_name="Bench"
                )
                service.begin_enrollment(token, STAFF_PASSWORD)
                secret = service.totp_secret(account) or ""
                service.confirm_enrollment(token, pyotp.TOTP(secret).at(self.runtime.clock.now()))
            self.staff[name] = (account.id, email, secret)
        with self.runtime.database.transaction() as session:
            self._context(session)
            RoleKeyService(session, self.runtime).initialise(
                self.staff["starter"][1], self.staff["compliance"][1]
            )
        with self.runtime.database.transaction() as session:
            self._context(session)
            account = AccountService(session, self.runtime).get(self.staff["starter"][0])
            keyring = self.runtime.custody(session).open_keyring(account.id, STAFF_PASSWORD)
            RoleKeyService(session, self.runtime).grant(
                Principal.in_process(account, keyring), KeyRole.PHYSICIAN, self.staff["reader"][0]
            )

    def members(self, count: int) -> list[tuple[uuid.UUID, bytes, bytes]]:
        from medchat.services.accounts import AccountService, NewMember

        out = []
        for n in range(count):
            with self.runtime.database.transaction() as session:
                self._context(session)
                service = AccountService(session, self.runtime)
                service.register_member(
                    NewMember(
                        email=f"member{n}@rotation.bench.test",
                        password=MEMBER_PASSWORD,
                        first_name="Camille",
                        last_name="Durand",
                        birth_date=date(1988, 4, 12),
                        sex="female",
                    )
                )
                account = service.find_by_email(f"member{n}@rotation.bench.test")
                assert account is not None
                key = self.runtime.custody(session).verified_personal_key(account.id)
                out.append((account.id, key.key_id, key.public_key))
        return out

    def recipients(self, members: list[tuple[uuid.UUID, bytes, bytes]]) -> Recipients:
        from medchat.models import KeyRole

        with self.runtime.database.transaction() as session:
            custody = self.runtime.custody(session)
            physician = custody.active_role_key(KeyRole.PHYSICIAN)
            archive = custody.active_role_key(KeyRole.ARCHIVE)
            return Recipients(
                key_dir=str(self.env.key_dir),
                physician=(physician.id, physician.key_id, physician.public_key),
                archive=(archive.id, archive.key_id, archive.public_key),
                members=tuple(members),
            )


def _default_signals() -> None:
    """Pool workers end on SIGTERM quietly (the parent's handler turns it into Ctrl-C)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# -- the reader ---------------------------------------------------------------------------------


def _reader(port: int, token: str, ids: list[str], stop: Any, out: Any) -> None:
    """Closed loop: one clinician request after another, (start time, ms, status) each."""
    import http.client

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    results = []
    rng = random.Random(7)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        path = f"/api/v1/clinician/conversations/{rng.choice(ids)}/messages?limit=20"
        began = time.time()
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            response.read()
            status = response.status
        except OSError:
            status = 0
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        results.append((began, (time.time() - began) * 1000, status))
    conn.close()
    out.send(results)


def latency(samples: list[tuple[float, float, int]]) -> dict[str, Any]:
    ms = [s[1] for s in samples]
    seconds = (samples[-1][0] - samples[0][0]) if len(samples) > 1 else 0.0
    return {
        "requests": len(samples),
        "errors": sum(1 for s in samples if s[2] != 200),
        "statuses": sorted({s[2] for s in samples}),
        "per_second": round(len(samples) / seconds, 1) if seconds else None,
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1) if ms else None,
    }


def _next_totp_step() -> None:
    """A one-time code is accepted once: wait for the next 30-second step."""
    time.sleep(30.5 - time.time() % 30)


def login(port: int, email: str, secret: str) -> str:
    import pyotp

    for _ in range(2):
        body = {"email": email, "password": STAFF_PASSWORD, "totp_code": pyotp.TOTP(secret).now()}
        status, data = call(port, "POST", "/api/v1/auth/token", body=body)
        if status != 401:
            break
        _next_totp_step()
    return str(expect(status, data, 200, f"sign-in of {email}")["access_token"])


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system
