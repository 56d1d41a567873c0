"""Consent to health messaging: no question or message without a current, versioned grant.

API.md "Member": a member grants consent to a named version of the consent text; withdrawing
it stops new questions and messages while the history stays readable. Each grant is a new
``consents`` row, so the record shows which text was agreed to and when. At most one grant is
current per member: a grant to a new version ends the previous one (its ``withdrawn_at`` is
when it stopped applying), and a withdrawal ends the current one. Rows are never deleted.
Grants and withdrawals are audited with the member as subject (ids and versions only).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Exists, SQLColumnExpression, bindparam, exists, select, update
from sqlalchemy.orm import Session

from medchat import audit
from medchat.db import rows_changed
from medchat.errors import ConsentRequired
from medchat.identity.principal import Principal
from medchat.models import Consent
from medchat.services.context import ServiceContext

HEALTH_MESSAGING = "health_messaging"


@dataclass(frozen=True)
class ConsentState:
    """Whether a member currently consents, to which version of the text, since when."""

    granted: bool
    version: str | None = None
    granted_at: datetime | None = None


NOT_GRANTED = ConsentState(granted=False)


def current_consent_exists(account_id: SQLColumnExpression[uuid.UUID]) -> Exists:
    """``EXISTS`` a current health-messaging grant of ``account_id``: the one definition of
    "current", for the check below and for statements that read it along with a row."""
    return exists().where(
        Consent.account_id == account_id,
        Consent.purpose == HEALTH_MESSAGING,
        Consent.withdrawn_at.is_(None),
    )


#: Whether a current grant exists (every send asks): built once, bound per call.
_HAS_CURRENT = select(
    current_consent_exists(bindparam("account_id", type_=Consent.account_id.type))
)


class ConsentService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime

    def _current_row(self, account_id: uuid.UUID) -> Consent | None:
        return self.session.scalar(
            select(Consent)
            .where(
                Consent.account_id == account_id,
                Consent.purpose == HEALTH_MESSAGING,
                Consent.withdrawn_at.is_(None),
            )
            .order_by(Consent.granted_at.desc())
            .limit(1)
        )

    def state(self, account_id: uuid.UUID) -> ConsentState:
        """The member's current health-messaging consent (``granted=False`` if none)."""
        row = self._current_row(account_id)
        if row is None:
            return NOT_GRANTED
        return ConsentState(granted=True, version=row.version, granted_at=row.granted_at)

    def require_current(self, member_id: uuid.UUID, *, known: bool | None = None) -> None:
        """Raise ``ConsentRequired`` unless the member consents to health messaging now.

        ``known`` is the answer of ``current_consent_exists`` read in this transaction along
        with the conversation row (``ConversationAccess.load``); without it, one query asks.
        """
        if known is None:
            known = bool(self.session.scalar(_HAS_CURRENT, {"account_id": member_id}))
        if not known:
            raise ConsentRequired

    def grant(self, actor: Principal, version: str) -> ConsentState:
        """Record consent to ``version`` of the text and return the new state.

        Granting the version that is already current changes nothing (PUT is idempotent); a
        different version, or a grant after a withdrawal, adds a row and ends the previous one.
        """
        current = self._current_row(actor.id)
        if current is not None and current.version == version:
            return self.state(actor.id)
        now = self.runtime.clock.now()
        replaced = self._end_current(actor.id, now)
        row = Consent(
            id=uuid.uuid4(),
            account_id=actor.id,
            purpose=HEALTH_MESSAGING,
            version=version,
            granted_at=now,
        )
        self.session.add(row)
        self.session.flush()
        audit.record(
            self.session,
            "consent.grant",
            target_type="consent",
            target_id=row.id,
            subject_id=actor.id,
            details={"purpose": HEALTH_MESSAGING, "version": version, "replaced": replaced},
        )
        return ConsentState(granted=True, version=version, granted_at=now)

    def withdraw(self, actor: Principal) -> None:
        """End the current grant; nothing to do (and nothing audited) when there is none."""
        ended = self._end_current(actor.id, self.runtime.clock.now())
        if ended:
            audit.record(
                self.session,
                "consent.withdraw",
                target_type="account",
                target_id=actor.id,
                subject_id=actor.id,
                details={"purpose": HEALTH_MESSAGING},
            )

    def _end_current(self, account_id: uuid.UUID, now: datetime) -> int:
        result = self.session.execute(
            update(Consent)
            .where(
                Consent.account_id == account_id,
                Consent.purpose == HEALTH_MESSAGING,
                Consent.withdrawn_at.is_(None),
            )
            .values(withdrawn_at=now)
            .execution_options(synchronize_session="fetch")
        )
        return rows_changed(result) or 0
