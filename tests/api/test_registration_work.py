"""Registration does the same costly work for a new and a taken address (issue 12, item 5).

A new address cost bcrypt, scrypt and a key generation; a taken one bcrypt only, about three
seconds apart at production costs: the time told who is a member. The timing class without
timing, as the reset test does: count the operations each branch performs.
"""

from __future__ import annotations

from collections import Counter

from access_control import hybrid_kem, password_kdf
from access_control.passwords import PasswordHasher
from medchat.services.accounts import AccountService
from tests.support.accounts import make_member

REGISTRATION = {
    "password": "quokka-harbor-lantern-42",
    "first_name": "Jeanne",
    "last_name": "Moreau",
    "birth_date": "1979-02-03",
    "sex": "female",
}


def test_a_new_and_a_taken_address_do_the_same_costly_work(client, runtime, monkeypatch):
    taken = make_member(runtime)
    calls: Counter[str] = Counter()

    def counting(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        AccountService, "find_by_email", counting("lookup", AccountService.find_by_email)
    )
    for method in ("hash", "verify"):
        monkeypatch.setattr(
            PasswordHasher, method, counting("bcrypt", getattr(PasswordHasher, method))
        )
    monkeypatch.setattr(password_kdf, "_derive", counting("scrypt", password_kdf._derive))
    monkeypatch.setattr(
        hybrid_kem, "generate_kem_keypair", counting("keypair", hybrid_kem.generate_kem_keypair)
    )

    work = {}
    for label, email in (("new", "new.member@example.org"), ("taken", taken.email)):
        calls.clear()
        response = client.post("/api/v1/auth/register", json={**REGISTRATION, "email": email})
        assert response.status_code == 202
        work[label] = dict(calls)

    assert work["new"] == work["taken"] == {"lookup": 1, "bcrypt": 1, "scrypt": 1, "keypair": 1}
