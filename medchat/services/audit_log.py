"""Reading the audit trail (admins page through metadata; verification lives in ``audit``).

What an admin sees (issue 16 item 2; docs/security.md "Who sees members in the audit"):

- **Staff and admin events in full**: actor, action, target, network address, details.
- **Events about a member** (the entry names a member as its subject, or a member acted) show
  no member id, no member address, no target id and no details (ids there lead back to the
  member through the conversations table): the member appears as a **pseudonym**, ``M-`` and
  8 base32 characters, an HMAC of the member id under a key for the entry's UTC day, itself an
  HMAC of that day under the integrity key of ``MEDCHAT_KEY_DIR``. One member's events of one
  day share a pseudonym; their events of two days do not, and nothing in the database turns a
  pseudonym back into an id without the key. For their **medical use** (conversation, message,
  attachment, consent, read, export, archive, retention and content actions) the admin sees the
  action's class only (``conversation``, ``read``), never which one; account events (sign-in,
  profile, e-mail) keep their action. A staff member acting on a member's data (a clinician's
  read, an officer's retrieval) is shown in full as the actor, their own address included.

- **Entries that do not verify on their own** (``is_genuine``: hash and MAC) with their seq,
  time and action class only: a row planted through SQL decides nothing of what is shown.

The address shown is the one the log still keeps: sealed entries are opened here after their
commitment is checked (``medchat.audit.addresses.reveal``); once retention has erased it the
address is null and ``address_erased`` true.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from access_control import crypto
from access_control.roles import Role, is_staff
from medchat import audit
from medchat.audit.addresses import AddressKeys, is_erased, reveal
from medchat.audit.entry_format import is_genuine
from medchat.errors import NotFound
from medchat.models import Account, AuditEntry
from medchat.services.context import ServiceContext

_DAY_KEY_LABEL = "medchat/audit-member-pseudonym-day/v1"
_PSEUDONYM_LABEL = "medchat/audit-member-pseudonym/v1"
#: 5 bytes = 40 bits = 8 base32 characters, as the clinician's patient pseudonym.
_PSEUDONYM_BYTES = 5
#: Action prefixes that tell of a member's medical use; shown by class only.
MEDICAL_CLASSES = frozenset(
    {
        "archive",
        "attachment",
        "consent",
        "content",
        "conversation",
        "message",
        "read",
        "retention",
        "retrieval",
    }
)
#: Member actions of medical use outside those prefixes, and the class shown for them.
_MEDICAL_ACTIONS = {"member.export": "export"}


def day_key(integrity_key: bytes, day: date) -> bytes:
    """The pseudonym key of one UTC day: a new one each day, derived, never stored."""
    return crypto.mac(integrity_key, _DAY_KEY_LABEL, day.isoformat())


def member_pseudonym(integrity_key: bytes, day: date, member_id: uuid.UUID) -> str:
    tag = crypto.mac(day_key(integrity_key, day), _PSEUDONYM_LABEL, member_id)
    return "M-" + base64.b32encode(tag[:_PSEUDONYM_BYTES]).decode("ascii")


def action_class(action: str) -> str | None:
    """The class an admin sees of a medical action, or ``None`` for any other action."""
    if action in _MEDICAL_ACTIONS:
        return _MEDICAL_ACTIONS[action]
    if action.startswith("content.read."):  # a clinician's read of a member's conversation
        return "read"
    prefix = action.split(".", 1)[0]
    return prefix if prefix in MEDICAL_CLASSES else None


def _target_account(entry: AuditEntry) -> uuid.UUID | None:
    if entry.target_type != "account" or entry.target_id is None:
        return None
    try:
        return uuid.UUID(entry.target_id)
    except ValueError:
        return None


def _member_of(entry: AuditEntry, members: set[uuid.UUID]) -> uuid.UUID | None:
    """The member an entry is about: its subject, a member actor, or a member account as its
    target (a sign-in names the account only as its target)."""
    if entry.subject_id is not None:
        return entry.subject_id
    if entry.actor_role == Role.MEMBER and entry.actor_id is not None:
        return entry.actor_id
    target = _target_account(entry)
    return target if target in members else None


def _by_staff(entry: AuditEntry) -> bool:
    return entry.actor_role is not None and is_staff(entry.actor_role)


class AuditLogService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime
        self._address_keys = AddressKeys(seal=runtime.keys.profile, commit=runtime.keys.audit_mac)

    def page(self, *, before_seq: int | None, limit: int) -> list[AuditEntry]:
        """Newest first; keyset pagination on the sequence number (cost independent of size)."""
        statement = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
        if before_seq is not None:
            # The HTTP layer decodes the cursor (``decode_seq_cursor``: an integer in range).
            statement = statement.where(AuditEntry.seq < before_seq)
        return list(self.session.scalars(statement))

    def member_accounts(self, entries: list[AuditEntry]) -> set[uuid.UUID]:
        """Which of the accounts these entries target are members' (one query)."""
        targets = {t for t in map(_target_account, entries) if t is not None}
        if not targets:
            return set()
        return set(
            self.session.scalars(
                select(Account.id).where(Account.id.in_(targets), Account.role == Role.MEMBER)
            )
        )

    def shown_page(self, entries: list[AuditEntry]) -> list[dict[str, Any]]:
        members = self.member_accounts(entries)
        return [self.shown(entry, members) for entry in entries]

    def shown(self, entry: AuditEntry, members: set[uuid.UUID] | None = None) -> dict[str, Any]:
        """What an admin sees of one entry (module docstring); ``members``: the member
        accounts among the entries' targets (``member_accounts``)."""
        full = {
            "seq": entry.seq,
            "id": entry.id,
            "at": entry.at,
            "actor_id": entry.actor_id,
            "actor_role": entry.actor_role,
            "action": entry.action,
            "outcome": entry.outcome,
            "target_type": entry.target_type,
            "target_id": entry.target_id,
            "address": reveal(self._address_keys, entry),
            "address_erased": is_erased(entry),
            "details": json.loads(entry.details),
            "member": None,
        }
        if not is_genuine(self.runtime.keys.audit_mac, entry):
            # Planted or altered through SQL: its columns decide nothing (whom it is about,
            # who acted, whether its address may be shown), so nothing of it is shown but
            # that it is there (``medchat audit verify`` says where the chain broke).
            return {
                **full,
                "actor_id": None,
                "action": action_class(entry.action) or "unverified",
                "target_id": None,
                "address": None,
                "details": {},
            }
        member = _member_of(entry, members or set())
        by_member = entry.actor_role == Role.MEMBER
        if member is None and not by_member:
            return full
        return {
            **full,
            "actor_id": None if by_member else entry.actor_id,
            "action": action_class(entry.action) or entry.action,
            "target_id": None,
            # A member's request, or one before sign-in (registration): the member's address.
            "address": full["address"] if _by_staff(entry) else None,
            "details": {},
            "member": (
                None
                if member is None
                else member_pseudonym(self.runtime.keys.integrity, entry.at.date(), member)
            ),
        }

    def identify(self, seq: int, ticket: str) -> uuid.UUID | None:
        """The member an entry is about, for an audited lookup (``medchat audit identify``).

        The only way the service names the member behind a pseudonymised entry: recorded as
        ``audit.identify`` with the entry's seq and the ticket, the member as subject (their
        access log shows it). ``None`` when the entry is about no member. Raises ``NotFound``
        for an unknown seq.
        """
        entry = self.session.get(AuditEntry, seq)
        if entry is None:
            raise NotFound
        member = _member_of(entry, self.member_accounts([entry]))
        audit.record(
            self.session,
            "audit.identify",
            target_type="audit_entry",
            target_id=seq,
            subject_id=member,
            details={"seq": seq, "ticket": ticket},
        )
        return member
