"""Restriction of processing and objection (GDPR Arts. 18 and 21): a member freezes their data.

What a restriction does (docs/data-rights.md, "Restriction and objection"), while it lasts:

- the member's conversations are **frozen**: still readable and exportable by the member, but
  no new question, message or file, from either side, except a doctor's answer below
  (403 ``processing_restricted``);
- a doctor reads and answers only a conversation still **open** (its question waits for an
  answer: it was asked before the restriction, and leaving it unanswered could harm the
  member); an answered or closed one is refused (403) and left out of the queue;
- nothing else changes: the member may still rectify, export, erase and read their access
  log; key operations that read no content (re-wraps after a password reset) go on; the
  retention job destroys and seals as scheduled.

An **objection** is recorded as a restriction on the ground ``objection`` and, since every
processing of health exchanges rests on consent (GDPR Art. 9(2)(a)), it also withdraws that
consent (``ConsentService``): the processing the member objects to stops at once, and the
restriction holds, pending the data protection officer's answer (Art. 18(1)(d)), until the
member or the officer lifts it. What the law requires (the audit trail, the sealed archive for
its legal period) goes on; the export says so (``kept_after_deletion``).

Each change is audited with the member as subject (``privacy.restrict``,
``privacy.restriction_lift``, ``privacy.objection``; ground, who asked, the ticket of a
request received by mail), and shows in the member's access log. Rows are tagged
(``medchat.models.restrictions``); the hot paths read whether one exists with the
conversation row (``active_restriction_exists``) and load it, tag checked, only when it does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Exists, SQLColumnExpression, exists, select
from sqlalchemy.orm import Session

from medchat import audit
from medchat.errors import ProcessingRestricted
from medchat.models import ProcessingRestriction, RestrictionGround
from medchat.services.consent import ConsentService
from medchat.services.context import ServiceContext

#: Who asked: the member in the app, or the data protection officer on a mailed request.
BY_MEMBER = "member"
BY_DPO = "dpo"


def active_restriction_exists(account_id: SQLColumnExpression[uuid.UUID]) -> Exists:
    """``EXISTS`` a restriction of ``account_id`` not lifted: the one definition of
    "restricted now", for statements that read it along with a conversation row."""
    return exists().where(
        ProcessingRestriction.account_id == account_id,
        ProcessingRestriction.lifted_at.is_(None),
    )


@dataclass(frozen=True)
class RestrictionState:
    restricted: bool
    ground: str | None = None
    since: datetime | None = None


class RestrictionService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime

    def current(self, member_id: uuid.UUID) -> ProcessingRestriction | None:
        """The restriction in force, loaded through the ORM so its row tag is checked
        (``RowIntegrityFailure`` for a planted or edited row)."""
        return self.session.scalar(
            select(ProcessingRestriction)
            .where(
                ProcessingRestriction.account_id == member_id,
                ProcessingRestriction.lifted_at.is_(None),
            )
            .order_by(ProcessingRestriction.restricted_at.desc())
            .limit(1)
        )

    def state(self, member_id: uuid.UUID) -> RestrictionState:
        row = self.current(member_id)
        if row is None:
            return RestrictionState(restricted=False)
        return RestrictionState(restricted=True, ground=row.ground, since=row.restricted_at)

    def is_restricted(self, member_id: uuid.UUID, *, known: bool | None = None) -> bool:
        """Whether processing is restricted now. ``known`` is ``active_restriction_exists``
        read with the conversation row; the row itself is loaded (its tag checked) only when
        it says so, or when nothing was read."""
        if known is False:
            return False
        return self.current(member_id) is not None

    def require_unrestricted(self, member_id: uuid.UUID, *, known: bool | None = None) -> None:
        """Raise ``ProcessingRestricted`` while the member's processing is restricted."""
        if self.is_restricted(member_id, known=known):
            raise ProcessingRestricted

    def restrict(
        self,
        member_id: uuid.UUID,
        *,
        ground: str = RestrictionGround.MEMBER_REQUEST,
        by: str = BY_MEMBER,
        ticket: str | None = None,
    ) -> RestrictionState:
        """Restrict processing; already restricted on the same ground changes nothing. An
        objection while restricted on another ground replaces it (the history keeps both)."""
        row = self.current(member_id)
        if row is not None and row.ground == ground:
            return self.state(member_id)
        now = self.runtime.clock.now()
        if row is not None:
            row.lifted_at, row.lifted_by = now, by
        self.session.add(
            ProcessingRestriction(
                id=uuid.uuid4(),
                account_id=member_id,
                ground=ground,
                requested_by=by,
                ticket=ticket,
                restricted_at=now,
            )
        )
        self.session.flush()
        action = (
            "privacy.objection" if ground == RestrictionGround.OBJECTION else "privacy.restrict"
        )
        self._audit(action, member_id, {"ground": ground, "by": by, "ticket": ticket})
        return RestrictionState(restricted=True, ground=ground, since=now)

    def object(
        self, member_id: uuid.UUID, *, by: str = BY_MEMBER, ticket: str | None = None
    ) -> RestrictionState:
        """Record an objection: consent to health messaging withdrawn, processing restricted
        on the ground ``objection`` until it is lifted."""
        ConsentService(self.session, self.runtime).withdraw_for(member_id)
        return self.restrict(member_id, ground=RestrictionGround.OBJECTION, by=by, ticket=ticket)

    def lift(self, member_id: uuid.UUID, *, by: str = BY_MEMBER, ticket: str | None = None) -> bool:
        """Lift the restriction in force (whatever its ground); ``False`` when there is none
        (nothing is audited then). Consent withdrawn by an objection stays withdrawn: the
        member consents again to write again."""
        row = self.current(member_id)
        if row is None:
            return False
        row.lifted_at, row.lifted_by = self.runtime.clock.now(), by
        self.session.flush()
        details = {"ground": row.ground, "by": by, "ticket": ticket}
        self._audit("privacy.restriction_lift", member_id, details)
        return True

    def history(self, member_id: uuid.UUID) -> list[dict[str, Any]]:
        """Every restriction and objection, oldest first, for the member's export."""
        rows = self.session.scalars(
            select(ProcessingRestriction)
            .where(ProcessingRestriction.account_id == member_id)
            .order_by(ProcessingRestriction.restricted_at, ProcessingRestriction.id)
        )
        return [
            {
                "ground": row.ground,
                "requested_by": row.requested_by,
                "restricted_at": row.restricted_at,
                "lifted_at": row.lifted_at,
                "lifted_by": row.lifted_by,
            }
            for row in rows
        ]

    def _audit(self, action: str, member_id: uuid.UUID, details: dict[str, Any]) -> None:
        audit.record(
            self.session,
            action,
            target_type="account",
            target_id=member_id,
            subject_id=member_id,
            details={key: value for key, value in details.items() if value is not None},
        )
