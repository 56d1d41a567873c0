"""What the long-job benchmarks share (``bench.rotation``, ``bench.retention``).

Each makes the care team and members in-process on a fresh database (``Setup``), hands the
public keys to the processes that make conversations (``Recipients``), and measures a
clinician's reads against gunicorn while its job runs (``_reader``, ``latency``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.environment import Environment, log
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


def made_in_two_processes(
    make_chunk: Callable[[Any], int], chunks: list[Any], total: int, chunk: int
) -> None:
    """Run ``make_chunk`` over ``chunks`` in two forked processes, logging the conversations
    made every four chunks."""
    made = 0
    started = time.perf_counter()
    with mp.get_context("fork").Pool(2, initializer=_default_signals) as pool:
        for count in pool.imap_unordered(make_chunk, chunks):
            made += count
            if made % (chunk * 4) == 0 or made == total:
                log(f"  {made:,} conversations ({time.perf_counter() - started:.0f} s)")


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


class ConversationKeyMaker:
    """In a set-up process: a new conversation's DEK, commitment and key-set tag, and its three
    wraps, exactly as ``ConversationKeys.new_key`` and ``add_wrap`` make them, from the public
    keys alone (rows for ``COPY``)."""

    def __init__(self, recipients: Recipients) -> None:
        from access_control import hybrid_kem
        from access_control.key_directory import load_server_keys
        from medchat.archive.gate import ArchiveGate

        server_keys = load_server_keys(Path(recipients.key_dir), create_missing=False)
        self._integrity = server_keys.integrity
        # A live conversation's archive wrap is gated, as ConversationKeys.add_wrap stores it.
        self._gate = ArchiveGate(server_keys.archive_gate)
        self._staff = tuple(
            (holder, hybrid_kem.load_public_key(public), row_id, key_id)
            for holder, (row_id, key_id, public) in (
                ("physician", recipients.physician),
                ("archive", recipients.archive),
            )
        )
        #: (account id, key id, public key) of each member.
        self.members = [(m, k, hybrid_kem.load_public_key(p)) for m, k, p in recipients.members]

    def new_key(self, conversation_id: uuid.UUID, member_id: uuid.UUID) -> tuple[bytes, ...]:
        """(DEK, its commitment, the key-set tag) of a conversation in the current format."""
        from access_control import crypto
        from medchat.keys.sealing import CURRENT_FORMAT
        from medchat.keys.wrap_binding import key_set_tag

        dek = crypto.generate_key()
        commitment = crypto.key_commitment(dek, conversation_id)
        tag = key_set_tag(
            self._integrity,
            SimpleNamespace(  # type: ignore[arg-type]
                id=conversation_id,
                member_id=member_id,
                key_commitment=commitment,
                content_version=CURRENT_FORMAT,
            ),
        )
        return dek, commitment, tag

    def wraps(
        self, dek: bytes, conversation_id: uuid.UUID, member: tuple[Any, ...], at: datetime
    ) -> list[tuple[Any, ...]]:
        """The physician, archive (gated) and member wraps: ``conversation_key_wraps`` rows."""
        from medchat.archive.gate import GATED
        from medchat.keys.wrap_binding import seal_wrap

        member_id, member_key_id, member_key = member
        rows = []
        for holder, recipient, recipient_id, key_id in (
            *self._staff,
            ("member", member_key, member_id, member_key_id),
        ):
            wrap = seal_wrap(
                recipient,
                dek,
                holder=holder,
                recipient_id=recipient_id,
                conversation_id=conversation_id,
            )
            if holder == "archive":
                holder = GATED
                wrap = self._gate.close(
                    wrap, conversation_id=conversation_id, recipient_key_id=key_id
                )
            rows.append((uuid.uuid4(), conversation_id, holder, key_id, wrap, at))
        return rows
