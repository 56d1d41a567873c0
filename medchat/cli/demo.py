"""Demo data for ``make run``: one account per role, the role keys, two questions.

For local use only: the demo doctor and compliance officer become the first holders of the
role keys (as ``medchat keys init`` would make them). The demo member has asked two questions:
one the demo doctor has answered, so a newcomer sees an exchange at once, and one still
waiting, so the console's Waiting tab (the doctor's work) is not empty and the newcomer can
answer it.

Running it again finds the same accounts (by blind index) and prints the same sign-in data;
it never duplicates them. Refused in production by the CLI.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import click
import pyotp
from flask.cli import with_appcontext
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat import audit
from medchat.cli.output import CLI_CONTEXT, cli_errors, emit, fail, json_option, loaded_runtime
from medchat.identity.principal import Principal
from medchat.models import AccountStatus, Conversation, KeyRole
from medchat.services.accounts import AccountService, NewMember
from medchat.services.consent import ConsentService
from medchat.services.context import ServiceContext
from medchat.services.conversations import ConversationService
from medchat.services.member_conversations import MemberConversationService
from medchat.services.role_keys import RoleKeyService

#: The demo's sign-in passwords, published in the README (``medchat demo`` is refused in
#: production).
_MEMBER_PASSWORD = "quokka-harbor-lantern-42"  # noqa: S105  # nosec B105  # published, demo only
_CLINICIAN_PASSWORD = "fennel-orbit-cascade-17"  # noqa: S105  # nosec B105  # published, demo only
_COMPLIANCE_PASSWORD = "granite-willow-sonnet-93"  # noqa: S105  # nosec B105  # published, demo only
_ADMIN_PASSWORD = "meadow-copper-violin-58"  # noqa: S105  # nosec B105  # published, demo only

DEMO_ACCOUNTS: tuple[dict[str, str], ...] = (
    {
        "role": Role.MEMBER,
        "email": "member@demo.medchat.test",
        "first_name": "Camille",
        "last_name": "Durand",
        "password": _MEMBER_PASSWORD,
    },
    {
        "role": Role.CLINICIAN,
        "email": "doctor@demo.medchat.test",
        "first_name": "Alice",
        "last_name": "Martin",
        "password": _CLINICIAN_PASSWORD,
    },
    {
        "role": Role.COMPLIANCE,
        "email": "compliance@demo.medchat.test",
        "first_name": "Bruno",
        "last_name": "Leroy",
        "password": _COMPLIANCE_PASSWORD,
    },
    {
        "role": Role.ADMIN,
        "email": "admin@demo.medchat.test",
        "first_name": "Chloe",
        "last_name": "Bernard",
        "password": _ADMIN_PASSWORD,
    },
)


def seed_demo(session: Session, runtime: ServiceContext) -> list[dict[str, Any]]:
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
                code = pyotp.TOTP(secret).at(runtime.clock.now())
                service.confirm_enrollment(token, code)
        assert account is not None  # nosec B101  # registered or created just above
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
    _seed_keys_and_conversation(session, runtime)
    return out


def _acting(session: Session, runtime: ServiceContext, email: str, password: str) -> Principal:
    """The demo person, with the keys their password opens; what follows is audited as theirs
    (from the address ``cli``), so the member's access log shows the doctor's answer."""
    account = AccountService(session, runtime).find_by_email(email)
    assert account is not None  # nosec B101  # one of DEMO_ACCOUNTS, seeded first
    keyring = runtime.custody(session).open_keyring(account.id, password)
    _act_as(session, account.id, account.role)
    return Principal.in_process(account, keyring)


def _act_as(session: Session, account_id: Any, role: str) -> None:
    audit.set_context(
        session, audit.AuditContext(actor_id=account_id, actor_role=role, address="cli")
    )


#: The question the demo doctor has answered, and the answer.
ANSWERED = {
    "subject": "Persistent cough",
    "body": "I have had a dry cough for two weeks, worse at night. No fever. Should I see someone?",
    "answer": "Thank you for writing. A dry cough lasting two weeks is common after a cold, but "
    "it should be checked if it lasts beyond three weeks or if you become short of breath. "
    "Does anything make it worse, such as lying down or cold air?",
}
#: The question left waiting in the console's queue.
WAITING = {
    "subject": "Skin rash",
    "body": "Since Monday I have a rash on both arms. Should I worry?",
}


def _seed_keys_and_conversation(session: Session, runtime: ServiceContext) -> None:
    """``keys init`` for the demo doctor and officer, then the answered and the waiting question.

    Counted, not looked up (subjects are sealed): none yet, both are asked; one (a demo made
    before the waiting question was added), only the waiting one. Once the newcomer has
    answered the waiting question, running the demo again leaves it answered.
    """
    member_spec, doctor_spec, compliance_spec = DEMO_ACCOUNTS[0], DEMO_ACCOUNTS[1], DEMO_ACCOUNTS[2]
    custody = runtime.custody(session)
    if not custody.role_keys(KeyRole.PHYSICIAN):
        RoleKeyService(session, runtime).initialise(doctor_spec["email"], compliance_spec["email"])
    member = _acting(session, runtime, member_spec["email"], member_spec["password"])
    asked = (
        session.scalar(
            select(func.count())
            .select_from(Conversation)
            .where(Conversation.member_id == member.id)
        )
        or 0
    )
    if asked >= 2:
        return
    if asked == 0:
        ConsentService(session, runtime).grant(member, "2026-01")
        answered = (
            MemberConversationService(session, runtime)
            .start(member, subject=ANSWERED["subject"], body=ANSWERED["body"])
            .result
        )
        doctor = _acting(session, runtime, doctor_spec["email"], doctor_spec["password"])
        conversations = ConversationService(session, runtime)
        # Answering needs the doctor's claim (``services.claims``), as on the console.
        conversations.claims.take(doctor, conversations.access.load(doctor, answered.id))
        conversations.send(doctor, answered.id, ANSWERED["answer"])
        _act_as(session, member.id, Role.MEMBER)
    MemberConversationService(session, runtime).start(
        member, subject=WAITING["subject"], body=WAITING["body"]
    )


@click.command("demo", help="Create demo accounts for local use and print how to sign in.")
@json_option
@with_appcontext
@cli_errors
def demo(as_json: bool) -> None:
    runtime = loaded_runtime()
    if runtime.settings.is_production:
        fail("demo accounts are refused in production")
    with runtime.database.transaction() as session:
        audit.set_context(session, CLI_CONTEXT)
        accounts = seed_demo(session, runtime)
    if as_json:
        emit(True, {"accounts": accounts}, "")
        return
    lines = ["Demo accounts (local use only):"]
    for item in accounts:
        line = f"  {item['role']:<11} {item['email']:<28} password: {item['password']}"
        if item.get("totp_secret"):
            line += f"  TOTP secret: {item['totp_secret']}"
        lines.append(line)
    base = runtime.settings.public_base_url
    lines += [
        "Staff sign in with a TOTP code: .venv/bin/python -m medchat.cli.totp_code SECRET",
        f"Doctor's console: {base}/console/login (one question waiting, one answered)",
        f"Member API: POST {base}/api/v1/auth/token, then GET {base}/api/v1/conversations",
    ]
    click.echo("\n".join(lines))
