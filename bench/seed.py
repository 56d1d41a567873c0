"""Accounts, tokens, conversations and message history for the run.

Accounts, role keys and tokens are made in-process through medchat's services (as
``tests/support/accounts.py`` does): a clinician and a compliance officer enrolled with TOTP,
``RoleKeyService.initialise``, members registered, and one access token per load client from
``AuthenticationService.login`` (so the sign-in rate limit never applies and bcrypt/scrypt
run only here, never in the measured loop). Conversations are created over HTTP through the
real API; long histories are then bulk-inserted with ``COPY``, each body sealed under the
conversation's DEK with ``medchat.keys.sealing.ContentKey``, exactly as ``append_message`` seals it.
"""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from bench.environment import Environment, log

CONSENT_VERSION = "2026-01"
# Passwords of throw-away accounts in a database dropped at the end of the run.
MEMBER_PASSWORD = "quokka-harbor-lantern-42"  # noqa: S105
STAFF_PASSWORD = "fennel-orbit-cascade-17"  # noqa: S105

_TEXT = (
    "since yesterday the pain in my left knee is worse after walking and the swelling has not "
    "gone down although I kept it raised and cold as you suggested last week could the dose "
    "of the anti inflammatory be changed or should I come in for an x ray before the weekend"
)
_WORDS = tuple(_TEXT.split(" "))


def message_text(n: int, length: int = 280) -> str:
    """A deterministic chat-like body of about ``length`` characters."""
    words: list[str] = []
    i = n
    while sum(len(w) + 1 for w in words) < length:
        words.append(_WORDS[i % len(_WORDS)])
        i += 7
    return f"#{n} " + " ".join(words)[: length - len(str(n)) - 2]


# -- HTTP helpers (set-up only) ----------------------------------------------------------------


def call(
    port: int, method: str, path: str, token: str | None = None, body: Any = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Accept": "application/json"}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = raw.decode(errors="replace")
    return response.status, data


def expect(status: int, data: Any, wanted: int, what: str) -> Any:
    if status != wanted:
        raise RuntimeError(f"{what}: expected {wanted}, got {status}: {data}")
    return data


# -- medchat ------------------------------------------------------------------------------------


@dataclass
class Member:
    index: int
    id: uuid.UUID
    email: str
    password: str = MEMBER_PASSWORD
    tokens: list[str] = field(default_factory=list)


class MedchatSeeder:
    """Works in-process on the run's database with the same settings as the servers."""

    def __init__(self, env: Environment) -> None:
        from medchat.config import Settings
        from medchat.services.context import build_service_context

        self.env = env
        self.settings = Settings.from_env(environ=env.medchat_env())
        self.runtime = build_service_context(self.settings)
        self.clinician_id: uuid.UUID | None = None
        self._keyrings: dict[uuid.UUID, Any] = {}

    def close(self) -> None:
        self.runtime.database.dispose()

    def _context(self, session: Any) -> None:
        from medchat import audit

        audit.set_context(session, audit.AuditContext(actor_role="cli", address="bench"))

    def create_staff_and_keys(self) -> None:
        """An enrolled clinician and compliance officer, then ``keys init`` for them."""
        import pyotp

        from access_control.roles import Role
        from medchat.services.accounts import AccountService
        from medchat.services.role_keys import RoleKeyService

        emails = {}
        for role, first, last in (
            (Role.CLINICIAN, "Alice", "Martin"),
            (Role.COMPLIANCE, "Bruno", "Leroy"),
        ):
            email = f"{role}@bench.medchat.test"
            with self.runtime.database.transaction() as session:
                self._context(session)
                service = AccountService(session, self.runtime)
                account, token = service.create_staff(
                    email=email, role=role, first_name=first, last_name=last
                )
                service.begin_enrollment(token, STAFF_PASSWORD)
                secret = service.totp_secret(account) or ""
                service.confirm_enrollment(token, pyotp.TOTP(secret).at(self.runtime.clock.now()))
                if role == Role.CLINICIAN:
                    self.clinician_id = account.id
            emails[role] = email
        with self.runtime.database.transaction() as session:
            self._context(session)
            RoleKeyService(session, self.runtime).initialise(
                emails[Role.CLINICIAN], emails[Role.COMPLIANCE]
            )
        log("clinician and compliance officer enrolled; role keys initialised")

    def _register(self, index: int) -> Member:
        from medchat.services.accounts import AccountService, NewMember

        email = f"member{index}@bench.medchat.test"
        with self.runtime.database.transaction() as session:
            self._context(session)
            service = AccountService(session, self.runtime)
            service.register_member(
                NewMember(
                    email=email,
                    password=MEMBER_PASSWORD,
                    first_name="Camille",
                    last_name=f"Durand{index}",
                    birth_date=date(1988, 4, 12),
                    sex="female",
                    phone="+33 6 12 34 56 78",
                    insurance_number=f"FR-BENCH-{index:04d}",
                )
            )
            account = service.find_by_email(email)
            assert account is not None
            return Member(index, account.id, email)

    def _login(self, member: Member) -> str:
        from medchat.services.authentication import AuthenticationService

        with self.runtime.database.transaction() as session:
            self._context(session)
            # In process, as a client on this host would (a member: no network rule).
            sign_in = AuthenticationService(session, self.runtime).login(
                member.email, member.password, None, address="127.0.0.1"
            )
            return sign_in.tokens.access_token

    def create_members(self, count: int, tokens_per_member: list[int]) -> list[Member]:
        """Register ``count`` members and sign each in ``tokens_per_member[i]`` times."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            members = list(pool.map(self._register, range(count)))
            wanted = [m for m, n in zip(members, tokens_per_member, strict=True) for _ in range(n)]
            for member, token in zip(wanted, pool.map(self._login, wanted), strict=True):
                member.tokens.append(token)
        log(
            f"{count} members registered, {sum(tokens_per_member)} access tokens issued "
            f"(bcrypt {self.settings.bcrypt_rounds}, scrypt 2^{self.settings.scrypt_log2_n})"
        )
        return members

    # -- over HTTP --------------------------------------------------------------------------

    @staticmethod
    def give_consent(port: int, member: Member) -> None:
        status, data = call(
            port,
            "PUT",
            "/api/v1/me/consent",
            member.tokens[0],
            {"health_messaging": True, "version": CONSENT_VERSION},
        )
        expect(status, data, 200, "PUT /api/v1/me/consent")

    @staticmethod
    def create_conversation(port: int, token: str, subject: str) -> uuid.UUID:
        status, data = call(
            port,
            "POST",
            "/api/v1/conversations",
            token,
            {"subject": subject, "body": message_text(0), "emergency_notice": "2026-12"},
        )
        data = expect(status, data, 201, "POST /api/v1/conversations")
        return uuid.UUID(data["id"])

    # -- bulk history -------------------------------------------------------------------------

    def _keyring(self, member: Member) -> Any:
        if member.id not in self._keyrings:
            with self.runtime.database.transaction() as session:
                custody = self.runtime.custody(session)
                self._keyrings[member.id] = custody.open_keyring(member.id, member.password)
        return self._keyrings[member.id]

    def add_history(self, member: Member, conversation_id: uuid.UUID, total: int) -> None:
        """Bring the conversation to ``total`` messages, alternating member and clinician.

        Each body is sealed under the conversation's DEK (opened with the member's keyring,
        as a request would) and the rows go in with one ``COPY``; the conversation's
        ``message_count`` and ``last_message_at`` move with them.
        """
        from medchat.keys.sealing import ContentKey, MessageLabel
        from medchat.models import Conversation, Holder

        with self.runtime.database.transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            assert conversation is not None
            dek = self.runtime.conversation_keys(session).open_key(
                conversation, self._keyring(member), Holder.MEMBER
            )
            key = ContentKey.for_conversation(dek, conversation)
            start = conversation.message_count
        count = total - start
        if count <= 0:
            return
        now = datetime.now(UTC)
        first = now - timedelta(seconds=count)
        with psycopg.connect(self.env.conninfo) as conn:
            with conn.cursor() as cursor:
                with cursor.copy(
                    "COPY messages (id, conversation_id, seq, author_role, author_id, "
                    "body_ciphertext, created_at) FROM STDIN"
                ) as copy:
                    for offset in range(count):
                        seq = start + offset + 1
                        message_id = uuid.uuid4()
                        clinician = seq % 2 == 0 and self.clinician_id is not None
                        role = "clinician" if clinician else "member"
                        author = self.clinician_id if clinician else member.id
                        assert author is not None
                        label = MessageLabel(message_id, seq, role, author)
                        copy.write_row(
                            (
                                message_id,
                                conversation_id,
                                seq,
                                role,
                                author,
                                key.seal_body(label, message_text(seq)),
                                first + timedelta(seconds=offset),
                            )
                        )
                cursor.execute(
                    "UPDATE conversations SET message_count = %s, last_message_at = %s "
                    "WHERE id = %s",
                    (total, now, conversation_id),
                )
            conn.commit()


def analyze(env: Environment) -> None:
    """Fresh planner statistics after bulk loads (autovacuum would get there on its own)."""
    with psycopg.connect(env.conninfo, autocommit=True) as conn:
        conn.execute("ANALYZE")


# -- the bare baseline ------------------------------------------------------------------------


def bare_conversation(env: Environment, member_id: uuid.UUID, messages: int) -> uuid.UUID:
    """A bare conversation with ``messages`` plaintext rows (same bodies as medchat's)."""
    conversation_id = uuid.uuid4()
    now = datetime.now(UTC)
    first = now - timedelta(seconds=messages)
    author_other = uuid.uuid4()
    with psycopg.connect(env.conninfo) as conn:
        with conn.cursor() as cursor:
            cursor.execute(
                "INSERT INTO bare_conversations (id, member_id, status, message_count, "
                "created_at, last_message_at) VALUES (%s, %s, 'open', %s, %s, %s)",
                (conversation_id, member_id, messages, first, now),
            )
            with cursor.copy(
                "COPY bare_messages (id, conversation_id, seq, author_role, author_id, body, "
                "created_at) FROM STDIN"
            ) as copy:
                for offset in range(messages):
                    seq = offset + 1
                    clinician = seq % 2 == 0
                    copy.write_row(
                        (
                            uuid.uuid4(),
                            conversation_id,
                            seq,
                            "clinician" if clinician else "member",
                            author_other if clinician else member_id,
                            message_text(seq),
                            first + timedelta(seconds=offset),
                        )
                    )
        conn.commit()
    return conversation_id


def timed(what: str, action: Callable[[], Any]) -> Any:
    import time

    start = time.perf_counter()
    result = action()
    log(f"{what} in {time.perf_counter() - start:.1f} s")
    return result
