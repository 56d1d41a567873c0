"""A password is hashed with no database connection held (``AuthenticationService.check_password``).

The hash costs a quarter of a second of CPU, and seconds beside a sign-in flood; a connection
idle in transaction meanwhile holds a slot of the pool and the ``accounts`` table's share lock,
which a migration queues behind (bench/README.md, "Two more full runs"). So every way of
signing in with a password (the API, the console, the command line's key holder; a known
account with the right or a wrong password, an unknown address) looks the account up, ends
that transaction, hashes, and reads the account again by id; a password changed while the
hash ran is refused like a wrong one.

Registration hashes before it looks the address up, a taken one too.

Observed through the engine's pool events: the connections checked out while ``verify`` or
``hash`` runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, select

from access_control.roles import Role
from medchat.cli.key_holder import signed_in_holder
from medchat.errors import InvalidCredentials
from medchat.models import Account, AuditEntry
from medchat.services.authentication import AuthenticationService
from tests.support.accounts import code_for, make_member, make_staff
from tests.support.console import post_form

TOKEN = "/api/v1/auth/token"


@pytest.fixture
def held_while_hashing(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Connections checked out of the pool at each ``verify`` or ``hash`` during the test."""
    engine = runtime.database.engine
    out = [0]

    def checked_out(*_: Any) -> None:
        out[0] += 1

    def checked_in(*_: Any) -> None:
        out[0] -= 1

    event.listen(engine, "checkout", checked_out)
    event.listen(engine, "checkin", checked_in)
    seen: list[int] = []

    def counting(work: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any) -> Any:
            seen.append(out[0])
            return work(*args)

        return counted

    for name in ("verify", "hash"):  # every hashing operation of the hasher
        monkeypatch.setattr(runtime.hasher, name, counting(getattr(runtime.hasher, name)))
    yield seen
    event.remove(engine, "checkout", checked_out)
    event.remove(engine, "checkin", checked_in)


def _api(client: Any, runtime: Any, email: str, password: str) -> int:
    return int(client.post(TOKEN, json={"email": email, "password": password}).status_code)


def _console(client: Any, runtime: Any, email: str, password: str) -> int:
    response = post_form(client, "/console/login", {"email": email, "password": password})
    return int(response.status_code)


SIGN_INS: dict[str, Callable[[Any, Any, str, str], int]] = {"api": _api, "console": _console}
#: What each way answers a right password and a wrong one.
ANSWERS = {"api": (200, 401), "console": (302, 401)}


@pytest.mark.parametrize("way", sorted(SIGN_INS))
@pytest.mark.parametrize("case", ["right", "wrong", "unknown"])
def test_no_connection_is_held_while_the_password_is_hashed(
    client, runtime, held_while_hashing, way, case
):
    person = make_member(runtime) if way == "api" else make_staff(runtime, Role.CLINICIAN)
    held_while_hashing.clear()  # the account's own password was hashed in-process
    email = "nobody.here@example.org" if case == "unknown" else person.email
    password = person.password if case == "right" else "not-the-password-at-all"

    status = SIGN_INS[way](client, runtime, email, password)

    right, wrong = ANSWERS[way]
    assert status == (right if case == "right" else wrong)
    assert held_while_hashing == [0]


@pytest.mark.parametrize("address", ["new", "taken"])
def test_registration_holds_no_connection_while_hashing(
    client, runtime, held_while_hashing, address
):
    taken = make_member(runtime)
    email = taken.email if address == "taken" else "brand.new.member@example.org"
    body = {
        "email": email,
        "password": "quokka-harbor-lantern-42",
        "first_name": "Jeanne",
        "last_name": "Moreau",
        "birth_date": "1979-02-03",
        "sex": "female",
    }
    held_while_hashing.clear()  # the member made above was hashed in-process

    assert client.post("/api/v1/auth/register", json=body).status_code == 202

    assert held_while_hashing == [0]


def test_the_command_lines_key_holder_holds_no_connection_while_hashing(
    runtime, held_while_hashing
):
    clinician = make_staff(runtime, Role.CLINICIAN)
    runtime.clock.advance(seconds=30)
    held_while_hashing.clear()

    signed_in_holder(runtime, clinician.email, clinician.password, code_for(clinician, runtime))

    assert held_while_hashing == [0]


def test_a_password_changed_while_the_hash_ran_is_refused(client, runtime, monkeypatch):
    member = make_member(runtime)
    verify = runtime.hasher.verify
    other = runtime.hasher.hash("another-long-passphrase-77")

    def changed_meanwhile(password: Any, stored: Any) -> bool:
        ok = verify(password, stored)
        with runtime.database.transaction() as session:
            account = session.get(Account, member.id)
            assert account is not None
            account.password_hash = other
        return bool(ok)

    monkeypatch.setattr(runtime.hasher, "verify", changed_meanwhile)

    assert _api(client, runtime, member.email, member.password) == 401
    with runtime.database.transaction() as session:
        failed = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "auth.login", AuditEntry.outcome != "success"
            )
        ).all()
    assert failed, "the refusal is audited like a wrong password"


def test_the_command_line_refuses_a_wrong_password_after_the_same_steps(
    runtime, held_while_hashing
):
    clinician = make_staff(runtime, Role.CLINICIAN)
    held_while_hashing.clear()

    with pytest.raises(InvalidCredentials):
        signed_in_holder(runtime, clinician.email, "not-the-password-at-all", "000000")

    assert held_while_hashing == [0]


@pytest.mark.parametrize("before", ["transaction_open", "change_unflushed"])
def test_a_callers_own_work_in_the_session_is_never_undone(runtime, held_while_hashing, before):
    """The lookup's transaction is ended only when it was the session's first work: a caller
    that read or changed something before keeps it (and its connection, for as long)."""
    member, other = make_member(runtime), make_member(runtime)
    held_while_hashing.clear()
    session = runtime.database.session()
    try:
        account = session.get(Account, other.id)
        assert account is not None
        if before == "change_unflushed":
            session.commit()  # loaded, then changed with no transaction open
        account.display_name = "Changed by the caller"

        AuthenticationService(session, runtime).check_password(
            member.email, member.password, address=None
        )

        assert held_while_hashing == [1]
        flushed = session.scalar(select(Account.display_name).where(Account.id == other.id))
        assert flushed == "Changed by the caller"
    finally:
        session.rollback()
        session.close()


#: The API's password routes whose hash runs with no connection held (the tests above).
HASHED_OUTSIDE_A_TRANSACTION = frozenset({"auth.token", "auth.register"})
#: The others, each behind a token a flood does not have, hash inside a unit of work that has
#: already read what the token names: ending it there would undo or re-check those reads.
HASHED_BEHIND_A_TOKEN = {
    "auth.enroll": "the enrollment token's row",
    "auth.password_reset_confirm": "the reset token's row",
    "auth.change_password": "step-up on the caller's account",
    "auth.mfa_enroll": "step-up on the caller's account",
    "auth.mfa_remove": "step-up on the caller's account",
    "member.change_email": "step-up on the caller's account",
    "member.delete_account": "step-up on the caller's account",
    "colleagues.revoke_physician_key": "step-up on the caller's account",
    "colleagues.revoke_archive_key": "step-up on the caller's account",
}


def test_every_password_route_of_the_api_is_classified(app):
    """Every route whose request schema has a password field, from the URL map: a new one must
    join the tests above or say why it hashes behind a token."""
    found = set()
    for rule in app.url_map.iter_rules():
        apidoc = getattr(app.view_functions[rule.endpoint], "_apidoc", {})
        for parameter in apidoc.get("arguments", {}).get("parameters", []):
            schema = parameter.get("schema")
            schema = schema() if isinstance(schema, type) else schema
            if schema is not None and any("password" in name for name in schema.fields):
                found.add(rule.endpoint)

    assert found == HASHED_OUTSIDE_A_TRANSACTION | set(HASHED_BEHIND_A_TOKEN)
