"""Demo accounts for ``make run``: one per role, enrolled and ready, for local use only.

Running it again finds the same accounts (by blind index) and prints the same sign-in data;
it never duplicates them. Refused in production by the CLI.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from access_control import totp
from access_control.roles import Role
from medchat.models import AccountStatus
from medchat.runtime import Runtime
from medchat.services.accounts import AccountService, NewMember

DEMO_ACCOUNTS: tuple[dict[str, str], ...] = (
    {
        "role": Role.MEMBER,
        "email": "member@demo.medchat.test",
        "first_name": "Camille",
        "last_name": "Durand",
        "password": "quokka-harbor-lantern-42",
    },
    {
        "role": Role.CLINICIAN,
        "email": "doctor@demo.medchat.test",
        "first_name": "Alice",
        "last_name": "Martin",
        "password": "fennel-orbit-cascade-17",
    },
    {
        "role": Role.COMPLIANCE,
        "email": "compliance@demo.medchat.test",
        "first_name": "Bruno",
        "last_name": "Leroy",
        "password": "granite-willow-sonnet-93",
    },
    {
        "role": Role.ADMIN,
        "email": "admin@demo.medchat.test",
        "first_name": "Chloe",
        "last_name": "Bernard",
        "password": "meadow-copper-violin-58",
    },
)


def seed_demo(session: Session, runtime: Runtime) -> list[dict[str, Any]]:
    """Create (or find) the demo accounts; return how to sign in as each."""
    service = AccountService(session, runtime)
    out = []
    for spec in DEMO_ACCOUNTS:
        account = service.find_by_email(spec["email"])
        if account is None:
            if spec["role"] == Role.MEMBER:
                service.register_member(
                    NewMember(
                        email=spec["email"],
                        password=spec["password"],
                        first_name=spec["first_name"],
                        last_name=spec["last_name"],
                        birth_date=date(1988, 4, 12),
                        sex="female",
                        phone="+33 6 12 34 56 78",
                        insurance_number="FR-DEMO-0001",
                    )
                )
                account = service.find_by_email(spec["email"])
            else:
                account, token = service.create_staff(
                    email=spec["email"],
                    role=Role(spec["role"]),
                    first_name=spec["first_name"],
                    last_name=spec["last_name"],
                )
                service.begin_enrollment(token, spec["password"])
                secret = service.totp_secret(account) or ""
                code = totp.pyotp.TOTP(secret).at(runtime.clock.now())
                service.confirm_enrollment(token, code)
        assert account is not None
        if account.status != AccountStatus.ACTIVE:
            continue
        out.append(
            {
                "role": spec["role"],
                "email": spec["email"],
                "password": spec["password"],
                "totp_secret": service.totp_secret(account) if account.has_totp else None,
            }
        )
    return out
