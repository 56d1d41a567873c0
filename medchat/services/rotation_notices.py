"""A holder lost a role key: the rotation is due, and the remaining holders are told by mail.

Every loss of a role key (a grant revoked, an account disabled, a staff reset) comes here:
``KeyCustody.mark_rotation_due`` marks the key and records the removal (which starts new key
epochs, ``medchat.keys.epochs``), and each remaining active holder of the role is mailed the
deadline after which nothing new is sealed to the key (``medchat.keys.rotation_deadline``), so
somebody who can rotate learns of it before the service stops taking new messages. The mail
names the role, the reason code and the deadline: never who lost the key, never content.
Mails leave after the commit (``deliver_after_commit``): a refused revocation mails nobody.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from medchat.keys.holders import active_holders
from medchat.models import Account, AccountStatus, RoleKey
from medchat.services.context import ServiceContext
from medchat.services.mail import compose, deliver_after_commit

SUBJECT = "medchat: a role key must be rotated"


def notice_text(role: str, reason: str, due_since: str, deadline: str) -> str:
    return (
        f"A holder of the {role} role key lost it ({reason}) on {due_since}.\n\n"
        f"New content already goes to a successor key they never held, but until the key is\n"
        f"rotated, whoever lost it may still open what was sealed to it before. From\n"
        f"{deadline} on, no new question, message or file can be sent until a holder of the key\n"
        f"runs 'medchat keys rotate --role {role}' (docs/security.md, 'Rotate a role key').\n"
    )


def mark_rotation_due(
    session: Session,
    runtime: ServiceContext,
    role: str,
    reason: str,
    *,
    lost: uuid.UUID | None = None,
) -> list[RoleKey]:
    """Mark ``role``'s key for rotation (``KeyCustody.mark_rotation_due``, which also makes
    the successor key, leaving out ``lost``) and mail its remaining active holders; returns
    the rows marked (none before ``keys init``)."""
    custody = runtime.custody(session)
    rows = custody.mark_rotation_due(role, reason, lost=lost)
    due = [row.rotation_due_at for row in rows if row.rotation_due_at is not None]
    if not due:
        return rows
    since = min(due)
    deadline = since + runtime.settings.rotation_deadline
    holders = active_holders(session, custody, role)
    if not holders:
        return rows
    accounts = session.scalars(
        select(Account).where(Account.id.in_(holders), Account.status == AccountStatus.ACTIVE)
    )
    body = notice_text(role, reason, since.isoformat(), deadline.isoformat())
    for account in accounts:
        address = runtime.profiles.open(account.id, "email", account.email_ciphertext)
        if address:
            message = compose(address, SUBJECT, body, at=custody.now)
            deliver_after_commit(session, runtime.postman, message)
    return rows
