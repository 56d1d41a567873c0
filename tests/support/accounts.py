"""Account factories and sign-in helpers (real services, real crypto, real database)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyotp

from access_control.roles import Role
from medchat import audit
from medchat.services.accounts import AccountService, NewMember
from medchat.services.context import ServiceContext

_counter = itertools.count(1)
PASSWORDS = {
    Role.MEMBER: "quokka-harbor-lantern-42",
    Role.CLINICIAN: "fennel-orbit-cascade-17",
    Role.COMPLIANCE: "granite-willow-sonnet-93",
    Role.ADMIN: "meadow-copper-violin-58",
    Role.DPO: "harbor-thistle-mosaic-64",
}

#: A complete, valid body for ``POST /api/v1/auth/register``.
REGISTRATION = {
    "email": "new.member@example.org",
    "password": "quokka-harbor-lantern-42",
    "first_name": "Jeanne",
    "last_name": "Moreau",
    "birth_date": "1979-02-03",
    "sex": "female",
}


@dataclass
class Person:
    id: Any
    email: str
    password: str
    role: str
    totp_secret: str | None = None


def make_member(runtime: ServiceContext, *, totp: bool = False, **fields: Any) -> Person:
    n = next(_counter)
    data = {
        "email": f"member{n}@example.org",
        "password": PASSWORDS[Role.MEMBER],
        "first_name": "Camille",
        "last_name": "Durand",
        "birth_date": date(1988, 4, 12),
        "sex": "female",
        "phone": "+33 6 12 34 56 78",
        "insurance_number": "FR-0000-1",
    }
    data.update(fields)
    with runtime.database.transaction() as session:
        service = AccountService(session, runtime)
        service.register_member(NewMember(**data))
        account = service.find_by_email(data["email"])
        assert account is not None
        secret = None
        if totp:
            service.start_mfa(account)
            secret = service.totp_secret(account)
            service.confirm_mfa(account, pyotp.TOTP(secret).at(runtime.clock.now()), uuid.uuid4())
    return Person(account.id, data["email"], data["password"], Role.MEMBER, secret)


def make_staff(runtime: ServiceContext, role: Role, **fields: Any) -> Person:
    n = next(_counter)
    email = fields.pop("email", f"{role}{n}@staff.example.org")
    with runtime.database.transaction() as session:
        audit.set_context(session, audit.AuditContext(actor_role="test"))
        service = AccountService(session, runtime)
        account, token = service.create_staff(
            email=email,
            role=role,
            first_name=fields.get("first_name", "Alice"),
            last_name=fields.get("last_name", "Martin"),
        )
        service.begin_enrollment(token, PASSWORDS[role])
        secret = service.totp_secret(account)
        service.confirm_enrollment(token, pyotp.TOTP(secret).at(runtime.clock.now()))
    return Person(account.id, email, PASSWORDS[role], role, secret)


def code_for(person: Person, runtime: ServiceContext) -> str:
    assert person.totp_secret
    return pyotp.TOTP(person.totp_secret).at(runtime.clock.now())


def login(client: Any, runtime: ServiceContext, person: Person) -> dict[str, Any]:
    """Sign in through the API; moves the clock one TOTP step so a fresh code exists."""
    body: dict[str, Any] = {"email": person.email, "password": person.password}
    if person.totp_secret:
        runtime.clock.advance(seconds=30)  # type: ignore[attr-defined]
        body["totp_code"] = code_for(person, runtime)
    response = client.post("/api/v1/auth/token", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def init_role_keys(runtime: ServiceContext, clinician: Person, compliance: Person) -> None:
    """``medchat keys init`` for these two holders (pins go to the test key directory)."""
    from medchat.services.role_keys import RoleKeyService

    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).initialise(clinician.email, compliance.email)
