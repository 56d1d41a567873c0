"""Failure budgets and staff networks at sign-in (issue 12, items 2, 3 and 4).

- One second-factor budget per account, whether the wrong codes come through the API, the
  console's TOTP step or the reset confirmation, and from however many addresses.
- Wrong passwords lock the address that sent them (per account and address); from many
  addresses they lock the account softly: the right password and code together still get in.
- A staff password from outside the staff networks fails exactly as a wrong one, after the
  same work.

The tests' staff networks are ``127.0.0.0/8`` and ``::1``; ``203.0.113.0/24`` is outside.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyotp
import pytest

from access_control.passwords import PasswordHasher
from access_control.roles import Role
from medchat.identity import totp
from medchat.keys.custody import KeyCustody
from medchat.services.accounts import AccountService
from tests.support.accounts import Person, code_for, make_member, make_staff
from tests.support.console import post_form
from tests.support.mailbox import delivered, reset_token_in
from tests.support.responses import error_code

TOKEN = "/api/v1/auth/token"
WRONG_PASSWORD = "not-the-password-1"


def at(address: str) -> dict[str, Any]:
    return {"environ_base": {"REMOTE_ADDR": address}}


def wrong_code(person: Person, runtime) -> str:
    """Six digits that no step of the accepted drift window produces."""
    assert person.totp_secret
    now = runtime.clock.now().timestamp()
    valid = {pyotp.TOTP(person.totp_secret).at(now + drift) for drift in (-30, 0, 30)}
    return next(c for c in (f"{n:06d}" for n in range(123456, 999999, 7919)) if c not in valid)


def sign_in(client, person: Person, address: str, password: str | None = None, **extra: Any):
    body = {"email": person.email, "password": password or person.password, **extra}
    return client.post(TOKEN, json=body, **at(address))


# -- item 2: one second-factor budget per account -----------------------------------------------


def test_wrong_codes_at_the_console_and_the_api_spend_one_budget_per_account(app, client, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    # Three wrong codes at the console's TOTP step, each from another staff address.
    consoles = [app.test_client() for _ in range(3)]
    for n, console in enumerate(consoles):
        address = f"127.0.0.{10 + n}"
        credentials = {"email": clinician.email, "password": clinician.password}
        assert post_form(console, "/console/login", credentials, **at(address)).status_code == 302
        code = {"code": wrong_code(clinician, runtime)}
        assert post_form(console, "/console/totp", code, **at(address)).status_code == 401
    # Two more through the API, from yet another address.
    for _ in range(2):
        wrong = sign_in(client, clinician, "127.0.0.20", totp_code=wrong_code(clinician, runtime))
        assert wrong.status_code == 401 and error_code(wrong) == "invalid_mfa_code"

    runtime.clock.advance(seconds=30)
    right = sign_in(client, clinician, "127.0.0.30", totp_code=code_for(clinician, runtime))

    assert right.status_code == 429, right.get_json()
    assert error_code(right) == "rate_limited" and int(right.headers["Retry-After"]) > 0
    # The console is closed to the account too: a pending TOTP step, and a new sign-in.
    code = {"code": code_for(clinician, runtime)}
    assert post_form(consoles[0], "/console/totp", code, **at("127.0.0.10")).status_code == 429
    credentials = {"email": clinician.email, "password": clinician.password}
    console = post_form(app.test_client(), "/console/login", credentials, **at("127.0.0.40"))
    assert console.status_code == 429


def test_wrong_codes_at_the_reset_confirmation_count_toward_the_same_budget(make_app, tmp_path):
    app = make_app(mail_url=f"file://{tmp_path / 'mail'}")
    client, runtime = app.test_client(), app.extensions["medchat"]
    member = make_member(runtime, totp=True)
    client.post("/api/v1/auth/password-reset", json={"email": member.email})
    token = reset_token_in(delivered(runtime, tmp_path / "mail")[-1][0])
    for n in range(3):
        body = {
            "reset_token": token,
            "new_password": "lichen-tundra-pelican-86",
            "totp_code": wrong_code(member, runtime),
        }
        refused = client.post(
            "/api/v1/auth/password-reset/confirm", json=body, **at(f"198.51.100.{n}")
        )
        assert refused.status_code == 401
    for _ in range(2):
        wrong = sign_in(client, member, "198.51.100.9", totp_code=wrong_code(member, runtime))
        assert wrong.status_code == 401

    runtime.clock.advance(seconds=30)
    right = sign_in(client, member, "198.51.100.10", totp_code=code_for(member, runtime))

    assert right.status_code == 429


# -- item 3: lockouts are not a denial-of-service tool -------------------------------------------


def test_wrong_passwords_from_one_address_lock_that_address_not_the_clinician(client, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    for _ in range(5):
        assert sign_in(client, clinician, "203.0.113.7", WRONG_PASSWORD).status_code == 401

    attacker_again = sign_in(client, clinician, "203.0.113.7", WRONG_PASSWORD)
    runtime.clock.advance(seconds=30)
    clinician_at_work = sign_in(
        client, clinician, "127.0.0.1", totp_code=code_for(clinician, runtime)
    )

    assert attacker_again.status_code == 429
    assert clinician_at_work.status_code == 200, clinician_at_work.get_json()


def test_wrong_passwords_from_one_ipv6_prefix_lock_the_prefix_not_the_member(client, runtime):
    """A /64 is one subscriber's: each of its 2^64 addresses is not a budget of its own."""
    member = make_member(runtime)
    for n in range(5):
        answer = sign_in(client, member, f"2001:db8:1:1::{n + 1:x}", WRONG_PASSWORD)
        assert answer.status_code == 401

    same_prefix = sign_in(client, member, "2001:db8:1:1:ffff:ffff:ffff:fff0", WRONG_PASSWORD)
    next_prefix = sign_in(client, member, "2001:db8:1:2::1")

    assert same_prefix.status_code == 429
    assert next_prefix.status_code == 200, next_prefix.get_json()


def test_the_per_address_limit_counts_an_ipv6_prefix_once(client, runtime):
    """``PER_ADDRESS`` (30 a minute) for every sign-in from a /64, whichever addresses."""
    answers = Counter(
        client.post(
            TOKEN,
            json={"email": f"nobody{n}@example.org", "password": WRONG_PASSWORD},
            **at(f"2001:db8:7:7::{n + 1:x}"),
        ).status_code
        for n in range(31)
    )
    assert answers == {401: 30, 429: 1}


def _attack_from_many_addresses(client, person: Person) -> None:
    """Twenty wrong passwords, four from each of five addresses: no address is locked."""
    for n in range(20):
        answer = sign_in(client, person, f"203.0.113.{n % 5 + 1}", WRONG_PASSWORD)
        assert answer.status_code == 401


def test_a_locked_account_opens_to_the_password_and_code_together(client, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    _attack_from_many_addresses(client, clinician)
    runtime.clock.advance(seconds=30)

    answers = {
        "wrong password": sign_in(client, clinician, "127.0.0.2", WRONG_PASSWORD),
        "right password, no code": sign_in(client, clinician, "127.0.0.3"),
        "right password, wrong code": sign_in(
            client, clinician, "127.0.0.4", totp_code=wrong_code(clinician, runtime)
        ),
        "wrong password, right code": sign_in(
            client, clinician, "127.0.0.5", WRONG_PASSWORD, totp_code=code_for(clinician, runtime)
        ),
    }
    both = sign_in(client, clinician, "127.0.0.6", totp_code=code_for(clinician, runtime))

    # The same refusal whichever was wrong: a locked account tells nothing about its password.
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 429)
    assert len({r.get_data() for r in answers.values()}) == 1
    assert both.status_code == 200, both.get_json()


def test_a_locked_account_without_a_second_factor_waits(client, runtime):
    member = make_member(runtime)
    _attack_from_many_addresses(client, member)

    assert sign_in(client, member, "198.51.100.1").status_code == 429
    assert sign_in(client, make_member(runtime), "198.51.100.1").status_code == 200


def test_the_console_asks_a_locked_account_for_password_and_code_together(app, client, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    _attack_from_many_addresses(client, clinician)
    console = app.test_client()
    credentials = {"email": clinician.email, "password": clinician.password}

    alone = post_form(console, "/console/login", credentials)
    runtime.clock.advance(seconds=30)
    together = post_form(
        console, "/console/login", {**credentials, "code": code_for(clinician, runtime)}
    )

    assert alone.status_code == 429
    assert 'name="code"' in alone.get_data(as_text=True)
    assert together.status_code == 302
    assert together.headers["Location"].endswith("/console/queue")
    assert console.get("/console/account").status_code == 200


# -- item 4: staff networks at sign-in ------------------------------------------------------------


@pytest.fixture
def work(monkeypatch) -> Counter[str]:
    """Counts the costly steps of a sign-in: bcrypt, second factor, opening keys."""
    calls: Counter[str] = Counter()

    def counting(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    for owner, attribute, name in (
        (PasswordHasher, "verify", "bcrypt"),
        (totp, "verify_second_factor", "totp"),
        (AccountService, "totp_secret", "totp seed"),
        (KeyCustody, "open_keyring", "keys"),
    ):
        monkeypatch.setattr(owner, attribute, counting(name, getattr(owner, attribute)))
    return calls


def test_a_staff_password_from_outside_fails_as_a_wrong_one_after_the_same_work(
    client, runtime, work
):
    clinician = make_staff(runtime, Role.CLINICIAN)
    runtime.clock.advance(seconds=30)
    answers, costs = {}, {}
    for label, password, code in (
        ("right, with code", clinician.password, code_for(clinician, runtime)),
        ("right, no code", clinician.password, None),
        ("wrong", WRONG_PASSWORD, None),
    ):
        work.clear()
        extra = {"totp_code": code} if code else {}
        answers[label] = sign_in(client, clinician, "203.0.113.7", password, **extra)
        costs[label] = dict(work)

    assert {r.status_code for r in answers.values()} == {401}
    assert {r.get_data() for r in answers.values()} == {answers["wrong"].get_data()}
    assert error_code(answers["wrong"]) == "invalid_credentials"
    assert {tuple(sorted(r.headers.keys())) for r in answers.values()} == {
        tuple(sorted(answers["wrong"].headers.keys()))
    }
    assert costs["right, with code"] == costs["right, no code"] == costs["wrong"] == {"bcrypt": 1}


def test_members_sign_in_from_anywhere_and_staff_from_their_networks(client, runtime):
    member = make_member(runtime)
    clinician = make_staff(runtime, Role.CLINICIAN)
    runtime.clock.advance(seconds=30)

    assert sign_in(client, member, "203.0.113.7").status_code == 200
    inside = sign_in(client, clinician, "127.0.0.1", totp_code=code_for(clinician, runtime))
    assert inside.status_code == 200
