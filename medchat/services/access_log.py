"""Who touched a member's data, and when: the member's access log, read from the audit trail.

SECURITY-MODEL "Transparency for the member" (API.md ``GET /api/v1/me/access-log``). Every
entry the audit trail records about a member names them as ``subject_id``; this module is the
one place that decides which of those entries the member is shown and how each one reads:

================================================  ================  =================
audit action (``subject_id`` = the member)        ``action``        ``actor``
================================================  ================  =================
``content.*`` by a clinician (reads)              ``read``          "Dr. A."
``message.send`` by a clinician                   ``reply``         "Dr. A."
``attachment.upload`` by a clinician              ``reply``         "Dr. A."
``conversation.close`` by a clinician             ``close``         "Dr. A."
``archive.search`` naming the member              ``retrieval``     ``compliance``
``archive.retrieval.*`` (ask, approve, open,      ``retrieval``     ``compliance``
attachment, export)
``retention.*`` (destroy, seal, archive destroy)  ``retention``     ``system``
``privacy.restrict``                              ``restrict``      ``you`` / DPO
``privacy.objection``                             ``object``        ``you`` / DPO
``privacy.restriction_lift``                      ``lift_restriction`` ``you`` / DPO
``dpo.export_notice`` by the DPO                  ``export_request``  DPO
``profile.update`` by the DPO                     ``rectification``   DPO
``audit.identify`` (an entry traced to them)      ``identified``    ``operator``
================================================  ================  =================

Only entries with outcome ``success`` are listed (a refused attempt opened nothing; it stays
in the audit trail for compliance review). The member's own actions are never listed, but for
restrictions and objections (``own`` rules): they change what others may do with the data, so
the log shows when they began and ended, "you" when the member acted. Nothing that names
another member is listed. A clinician is shown by the display name members already
see on messages (``accounts.display_names``), never by e-mail or account id; compliance
officers are shown by role only. ``conversation_id`` comes from the entry's target or details,
or, for archive steps, from the archive record the entry names.

Pages are keyset-paginated on the audit sequence number, newest first, and the query filters
on ``subject_id`` first, so a page costs the same however long the trail is.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat.errors import Forbidden
from medchat.identity.principal import Principal
from medchat.models import ArchiveRecord, AuditEntry
from medchat.services.context import ServiceContext
from medchat.services.conversation_pages import Page
from medchat.services.display_names import display_names

COMPLIANCE_ACTOR = "compliance"
SYSTEM_ACTOR = "system"
#: The member themself, for the own actions the log shows (restriction, objection).
OWN_ACTOR = "you"
#: The data protection officer acting on a request received by mail.
DPO_ACTOR = "data protection officer"
OPERATOR_ACTOR = "operator"
#: Shown if a clinician account somehow has no display name (never its e-mail or id).
UNNAMED_CLINICIAN = "clinician"


@dataclass(frozen=True)
class Rule:
    """Audit entries a member sees as one access-log ``action``.

    An entry matches on its exact action (``actions``) or an action prefix, and, where
    ``actor_role`` is set, only when that role acted.
    """

    shown_as: str
    actions: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    actor_role: str | None = None
    #: Also the member's own entries (by default only others' acts are shown).
    own: bool = False

    def condition(self, member_id: uuid.UUID) -> ColumnElement[bool]:
        matches: list[ColumnElement[bool]] = (
            [AuditEntry.action.in_(self.actions)] if self.actions else []
        )
        matches += [AuditEntry.action.startswith(p, autoescape=True) for p in self.prefixes]
        condition = or_(*matches)
        if self.actor_role is not None:
            condition = and_(condition, AuditEntry.actor_role == self.actor_role)
        if not self.own:
            others = or_(AuditEntry.actor_id.is_(None), AuditEntry.actor_id != member_id)
            condition = and_(condition, others)
        return condition

    def matches(self, action: str, actor_role: str | None) -> bool:
        if self.actor_role is not None and actor_role != self.actor_role:
            return False
        return action in self.actions or action.startswith(self.prefixes)


RULES: tuple[Rule, ...] = (
    Rule("read", prefixes=("content.",), actor_role=Role.CLINICIAN),
    Rule("reply", actions=("message.send", "attachment.upload"), actor_role=Role.CLINICIAN),
    Rule("close", actions=("conversation.close",), actor_role=Role.CLINICIAN),
    Rule(
        "retrieval",
        actions=("archive.search",),
        prefixes=("archive.retrieval.",),
        actor_role=Role.COMPLIANCE,
    ),
    # Retention runs from cron with no signed-in actor; whatever context it carries, the
    # member is told "system".
    Rule("retention", prefixes=("retention.",)),
    Rule("restrict", actions=("privacy.restrict",), own=True),
    Rule("object", actions=("privacy.objection",), own=True),
    Rule("lift_restriction", actions=("privacy.restriction_lift",), own=True),
    # The data protection officer acting on a mailed request (``services.dpo``); the
    # restriction entries above show the officer too.
    Rule("export_request", actions=("dpo.export_notice",), actor_role=Role.DPO),
    Rule("rectification", actions=("profile.update",), actor_role=Role.DPO),
    # ``medchat audit identify``: an operator named the member behind a pseudonymised entry
    # of the admin audit view (docs/security.md "Who sees members in the audit").
    Rule("identified", actions=("audit.identify",)),
)
#: Access-log actions whose actor is the member or the data protection officer.
_PRIVACY_ACTIONS = frozenset(
    {"restrict", "object", "lift_restriction", "export_request", "rectification"}
)


@dataclass
class AccessLogEntry:
    at: datetime
    actor: str
    action: str
    conversation_id: uuid.UUID | None


def shown_action(action: str, actor_role: str | None) -> str | None:
    """The access-log action of an audit entry, or ``None`` if the member is not shown it."""
    for rule in RULES:
        if rule.matches(action, actor_role):
            return rule.shown_as
    return None


class AccessLogService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime

    def page(
        self, actor: Principal, *, limit: int, before_seq: int | None = None
    ) -> Page[AccessLogEntry, int]:
        """The member's access log, newest first, from before the sequence ``before_seq``.

        Raises ``Forbidden`` for anyone but a member (staff have the audit trail itself).
        """
        if actor.role != Role.MEMBER:
            raise Forbidden
        statement = (
            select(
                AuditEntry.seq,
                AuditEntry.at,
                AuditEntry.actor_id,
                AuditEntry.actor_role,
                AuditEntry.action,
                AuditEntry.target_type,
                AuditEntry.target_id,
                AuditEntry.details,
            )
            .where(
                AuditEntry.subject_id == actor.id,
                AuditEntry.outcome == "success",
                or_(*(rule.condition(actor.id) for rule in RULES)),
            )
            .order_by(AuditEntry.seq.desc())
            .limit(limit + 1)
        )
        if before_seq is not None:
            statement = statement.where(AuditEntry.seq < before_seq)
        rows = self.session.execute(statement).all()
        more = len(rows) > limit
        rows = rows[:limit]
        items = self._entries(rows, actor.id)
        return Page(items, rows[-1].seq if more else None)

    def _entries(self, rows: Sequence[Any], member_id: uuid.UUID) -> list[AccessLogEntry]:
        """Name the actors and find the conversations of a page (two queries at most)."""
        shown = [(row, shown_action(row.action, row.actor_role)) for row in rows]
        clinicians = {
            row.actor_id
            for row, action in shown
            if action not in ("retention", "identified")
            and action not in _PRIVACY_ACTIONS
            and row.actor_id
        }
        names = display_names(self.session, clinicians)
        details = {row.seq: _details(row.details) for row in rows}
        records = self._record_conversations(_record_id(row, details[row.seq]) for row in rows)
        entries = []
        for row, action in shown:
            if action is None:  # pragma: no cover - the query selects matching entries only
                continue
            entries.append(
                AccessLogEntry(
                    at=row.at,
                    actor=self._actor(action, row, names.get(row.actor_id), member_id),
                    action=action,
                    conversation_id=_conversation_of(row, details[row.seq], records),
                )
            )
        return entries

    @staticmethod
    def _actor(action: str, row: Any, name: str | None, member_id: uuid.UUID) -> str:
        if action == "retention":
            return SYSTEM_ACTOR
        if action in _PRIVACY_ACTIONS:
            return OWN_ACTOR if row.actor_id == member_id else DPO_ACTOR
        actor_role = row.actor_role
        if action == "identified":
            return OPERATOR_ACTOR
        if actor_role == Role.COMPLIANCE:
            return COMPLIANCE_ACTOR
        return name or UNNAMED_CLINICIAN

    def _record_conversations(
        self, record_ids: Iterable[uuid.UUID | None]
    ) -> dict[uuid.UUID, uuid.UUID]:
        ids = {record_id for record_id in record_ids if record_id is not None}
        if not ids:
            return {}
        rows = self.session.execute(
            select(ArchiveRecord.id, ArchiveRecord.conversation_id).where(ArchiveRecord.id.in_(ids))
        )
        return {record_id: conversation_id for record_id, conversation_id in rows}


def _details(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value is not None else None
    except ValueError:
        return None


def _record_id(row: Any, details: dict[str, Any]) -> uuid.UUID | None:
    """The archive record an entry names (archive steps), if it names no conversation."""
    if row.target_type == "conversation" or "conversation_id" in details:
        return None
    if row.target_type == "archive_record":
        return _uuid(row.target_id)
    return _uuid(details.get("record_id"))


def _conversation_of(
    row: Any, details: dict[str, Any], records: dict[uuid.UUID, uuid.UUID]
) -> uuid.UUID | None:
    """The conversation an entry is about: its target, its details, or its archive record."""
    if row.target_type == "conversation":
        return _uuid(row.target_id)
    if "conversation_id" in details:
        return _uuid(details["conversation_id"])
    record_id = _record_id(row, details)
    return records.get(record_id) if record_id is not None else None
