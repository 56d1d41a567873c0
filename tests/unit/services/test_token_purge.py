"""The purge of expired token rows (SECURITY-MODEL key hierarchy 10, "Sessions": expired session
and token rows are deleted, not merely ignored).

Exactly the expired rows go, to the second of the injected clock; a spent refresh token stays
(holding no secret) as reuse evidence until its family ends, and not a second longer; a second
run deletes nothing; a run that deleted something writes one audit entry; a sign-in deletes the
account's own expired rows only, bounded; on PostgreSQL two runs at once delete each row once,
and a row another transaction holds is left to it without waiting.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, text

from access_control import crypto
from access_control.roles import Role
from medchat import audit
from medchat.errors import InvalidToken
from medchat.models import AuthToken, EnrollmentToken, PasswordResetToken, TokenKind
from medchat.services.accounts import AccountService
from medchat.services.authentication import AuthenticationService
from medchat.services.password_reset import PasswordResetService
from medchat.services.token_purge import ACTION, PurgeCounts, TokenPurge, purge_account
from tests.support.accounts import make_member, make_staff
from tests.support.audit import audit_entries
from tests.support.tampering import execute_sql

SECOND = timedelta(seconds=1)


@pytest.fixture
def app(make_app, tmp_path):
    return make_app(mail_url=f"file://{tmp_path / 'mail'}")


def purge(runtime, **kwargs) -> PurgeCounts:
    return TokenPurge(runtime, **kwargs).run()


def ids(runtime, model) -> set[uuid.UUID]:
    with runtime.database.transaction() as session:
        return set(session.scalars(select(model.id)))


def token_id(runtime, token: str) -> uuid.UUID:
    with runtime.database.transaction() as session:
        return session.scalar(
            select(AuthToken.id).where(AuthToken.token_hash == crypto.token_hash(token))
        )


def row(runtime, model, row_id: uuid.UUID):
    with runtime.database.transaction() as session:
        found = session.get(model, row_id)
        session.expunge_all()
    return found


def log_in(runtime, person):
    with runtime.database.transaction() as session:
        return AuthenticationService(session, runtime).login(
            person.email, person.password, None, address="127.0.0.1"
        )


def refresh(runtime, refresh_token: str):
    with runtime.database.transaction() as session:
        return AuthenticationService(session, runtime).refresh(refresh_token, address=None)


def ask_reset(runtime, email: str) -> None:
    with runtime.database.transaction() as session:
        PasswordResetService(session, runtime).request(email)
    runtime.postman.wait()


def no_expired_row_holds_a_keyring(runtime) -> bool:
    now = runtime.clock.now()
    with runtime.database.transaction() as session:
        return not list(
            session.scalars(
                select(AuthToken.id).where(
                    AuthToken.expires_at <= now, AuthToken.sealed_keys.is_not(None)
                )
            )
        )


def test_a_run_deletes_exactly_the_rows_expired_to_the_second(runtime, clock):
    member = make_member(runtime)
    first = log_in(runtime, member).tokens
    ask_reset(runtime, member.email)
    (old_reset,) = ids(runtime, PasswordResetToken)
    make_staff(runtime, Role.ADMIN)  # enrolled: its enrollment token is spent
    with runtime.database.transaction() as session:
        AccountService(session, runtime).create_staff(
            email="newcomer@staff.example.org", role=Role.CLINICIAN, first_name="N", last_name="C"
        )
    clock.advance(minutes=1)
    second = refresh(runtime, first.refresh_token).tokens  # spends the first refresh token
    ask_reset(runtime, member.email)  # spends the first reset token
    (live_reset,) = ids(runtime, PasswordResetToken) - {old_reset}
    spent_refresh = token_id(runtime, first.refresh_token)
    access, refresh_row = (
        token_id(runtime, second.access_token),
        token_id(runtime, second.refresh_token),
    )
    with runtime.database.transaction() as session:
        enrollments = {e.id: e for e in session.scalars(select(EnrollmentToken))}
        session.expunge_all()
    live_enrollment = next(i for i, e in enrollments.items() if e.used_at is None)
    spent_enrollments = set(enrollments) - {live_enrollment}
    assert spent_enrollments  # the admin's (and any other staff's) used enrollment tokens

    # Used single-use tokens go whatever their expiry; nothing live is touched.
    counts = purge(runtime)
    assert counts.as_dict() == {
        "auth_tokens": 0,
        "old_keyring_tokens": 0,
        "password_reset_tokens": 1,
        "enrollment_tokens": len(spent_enrollments),
        "email_change_tokens": 0,
    }
    assert ids(runtime, PasswordResetToken) == {live_reset}
    assert ids(runtime, EnrollmentToken) == {live_enrollment}
    assert ids(runtime, AuthToken) == {spent_refresh, access, refresh_row}

    # The access token: kept one second before its expiry, deleted at it.
    access_end = row(runtime, AuthToken, access).expires_at
    clock.set(access_end - SECOND)
    assert purge(runtime).total == 0
    clock.set(access_end)
    assert purge(runtime).as_dict()["auth_tokens"] == 1
    assert ids(runtime, AuthToken) == {spent_refresh, refresh_row}

    for model, row_id in ((PasswordResetToken, live_reset), (EnrollmentToken, live_enrollment)):
        end = row(runtime, model, row_id).expires_at
        clock.set(end - SECOND)
        assert purge(runtime).total == 0
        assert row_id in ids(runtime, model)
        clock.set(end)
        assert purge(runtime).total == 1
        assert row_id not in ids(runtime, model)

    # The spent refresh token is reuse evidence until the family's end, then both go.
    family_end = row(runtime, AuthToken, refresh_row).family_expires_at
    assert row(runtime, AuthToken, spent_refresh).sealed_keys is None
    clock.set(family_end - SECOND)
    assert purge(runtime).total == 0
    assert ids(runtime, AuthToken) == {spent_refresh, refresh_row}
    assert no_expired_row_holds_a_keyring(runtime)
    clock.set(family_end)
    assert purge(runtime).as_dict()["auth_tokens"] == 2
    assert ids(runtime, AuthToken) == set()


def test_reuse_of_a_spent_refresh_token_is_still_caught_after_a_purge(runtime, clock):
    member = make_member(runtime)
    first = log_in(runtime, member).tokens
    clock.advance(minutes=1)
    second = refresh(runtime, first.refresh_token).tokens
    clock.advance(hours=1)  # every access token has expired
    assert purge(runtime).auth_tokens == 1

    with pytest.raises(InvalidToken):
        refresh(runtime, first.refresh_token)  # a leaked, spent token comes back
    assert token_id(runtime, second.refresh_token) is None  # the whole family is revoked


def test_an_expired_spent_refresh_row_that_holds_a_keyring_is_not_kept(runtime, clock):
    """Reuse evidence holds no secret: a spent row past its expiry that still carries sealed
    keys (a database writer's, or a bug's) is deleted, family or not."""
    member = make_member(runtime)
    first = log_in(runtime, member).tokens
    clock.advance(minutes=1)
    refresh(runtime, first.refresh_token)
    spent = token_id(runtime, first.refresh_token)
    execute_sql(
        runtime,
        "UPDATE auth_tokens SET expires_at = :at WHERE id = :id",
        at=clock.now() - SECOND,
        id=spent,
    )
    assert purge(runtime).auth_tokens == 0  # kept: evidence without secrets
    execute_sql(
        runtime,
        "UPDATE auth_tokens SET sealed_keys = (SELECT sealed_keys FROM auth_tokens"
        " WHERE kind = 'refresh' AND used_at IS NULL) WHERE id = :id",
        id=spent,
    )
    assert purge(runtime).auth_tokens == 1
    assert spent not in ids(runtime, AuthToken)
    assert no_expired_row_holds_a_keyring(runtime)


def test_a_second_run_deletes_nothing_and_only_a_run_that_deleted_is_audited(runtime, clock):
    member = make_member(runtime)
    for _ in range(3):
        log_in(runtime, member)
    clock.advance(hours=1)

    first, second = purge(runtime), purge(runtime)

    assert first.auth_tokens == 3 and second.total == 0
    (entry,) = audit_entries(runtime, ACTION)
    assert entry.outcome == "success" and entry.target_type == "token_purge"
    assert json.loads(entry.details)["auth_tokens"] == 3
    assert json.loads(entry.details)["as_of"] == clock.now().isoformat().replace("+00:00", "Z")
    with runtime.database.transaction() as session:
        assert audit.verify(session, runtime.keys.audit_mac).ok


def test_a_purge_as_of_a_later_time_is_refused(runtime, clock):
    log_in(runtime, make_member(runtime))
    with pytest.raises(ValueError, match="later"):
        TokenPurge(runtime).run(clock.now() + SECOND)
    assert TokenPurge(runtime).count_due(clock.now() + timedelta(hours=1)).auth_tokens == 1
    assert len(ids(runtime, AuthToken)) == 2


def test_a_sign_in_deletes_its_own_expired_rows_only_and_a_bounded_number(runtime, clock):
    mine, theirs = make_member(runtime), make_member(runtime)
    for _ in range(3):
        log_in(runtime, mine)
    log_in(runtime, theirs)
    clock.advance(hours=1)
    with runtime.database.transaction() as session:
        their_rows = set(
            session.scalars(select(AuthToken.id).where(AuthToken.account_id == theirs.id))
        )

    with runtime.database.transaction() as session:
        assert purge_account(session, mine.id, clock.now(), limit=2).auth_tokens == 2
    log_in(runtime, mine)  # the sign-in takes the third

    with runtime.database.transaction() as session:
        rows = list(session.scalars(select(AuthToken)))
        session.expunge_all()
    expired = [r for r in rows if r.kind == TokenKind.ACCESS and r.expires_at <= clock.now()]
    assert {r.account_id for r in expired} == {theirs.id}
    assert their_rows <= {r.id for r in rows}
    entries = audit_entries(runtime, ACTION)
    assert [
        (e.target_type, e.target_id, json.loads(e.details)["auth_tokens"]) for e in entries
    ] == [
        ("account", str(mine.id), 2),
        ("account", str(mine.id), 1),
    ]


def plant_expired_tokens(runtime, count: int) -> set[uuid.UUID]:
    """``count`` expired access-token rows, written as SQL would write them."""
    account = make_member(runtime)
    at = runtime.clock.now() - timedelta(hours=1)
    rows = [
        {
            "id": uuid.uuid4(),
            "account_id": account.id,
            "family_id": uuid.uuid4(),
            "kind": TokenKind.ACCESS,
            "token_hash": crypto.token_hash(crypto.random_token()),
            "mfa_verified": False,
            "created_at": at,
            "expires_at": at,
            "family_expires_at": at,
        }
        for _ in range(count)
    ]
    with runtime.database.engine.begin() as connection:
        connection.execute(insert(AuthToken.__table__), rows)
    return {r["id"] for r in rows}


@pytest.mark.postgresql_only
def test_two_runs_at_once_delete_each_row_once(runtime):
    if not runtime.database.is_postgresql:
        pytest.skip("row locks (FOR UPDATE SKIP LOCKED) are PostgreSQL's; SQLite serialises")
    planted = plant_expired_tokens(runtime, 120)
    start = threading.Barrier(2)
    results: list[PurgeCounts] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait(10)
            results.append(purge(runtime, batch_size=7))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert sum(r.auth_tokens for r in results) == len(planted)
    assert ids(runtime, AuthToken) & planted == set()
    audited = [json.loads(e.details)["auth_tokens"] for e in audit_entries(runtime, ACTION)]
    assert sum(audited) == len(planted)


@pytest.mark.postgresql_only
def test_a_row_another_transaction_holds_is_left_to_it_without_waiting(runtime):
    if not runtime.database.is_postgresql:
        pytest.skip("row locks (FOR UPDATE SKIP LOCKED) are PostgreSQL's; SQLite serialises")
    planted = plant_expired_tokens(runtime, 5)
    held = next(iter(planted))
    outcome: list[PurgeCounts] = []
    with runtime.database.engine.connect() as other_host:
        other_host.execute(
            text("SELECT id FROM auth_tokens WHERE id = :id FOR UPDATE"), {"id": held}
        )
        thread = threading.Thread(target=lambda: outcome.append(purge(runtime, batch_size=2)))
        thread.start()
        thread.join(15)
        finished = not thread.is_alive()
        other_host.rollback()
    thread.join(15)

    assert finished, "the purge waited for a row another transaction held"
    assert outcome[0].auth_tokens == 4
    assert ids(runtime, AuthToken) & planted == {held}
    assert purge(runtime).auth_tokens == 1
    assert ids(runtime, AuthToken) & planted == set()
