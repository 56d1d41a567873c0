"""Consent to health messaging: no question or message without a current, versioned grant.

API.md "Member": a member grants consent to a named version of the consent text; withdrawing
it stops new questions and messages while the history stays readable. Each grant is a new
``consents`` row, so the record shows which text was agreed to and when. At most one grant is
current per member: a grant to a new version ends the previous one (its ``withdrawn_at`` is
when it stopped applying), and a withdrawal ends the current one. Rows are never deleted.
Grants and withdrawals are audited with the member as subject (ids and versions only).

The server decides which version of the text is current (``medchat.services.consent_texts``):
a grant must name it (409 ``consent_version_not_current`` otherwise), and a member whose grant
names an older one is asked again before a new question (403 ``consent_outdated``, with the
current version). Follow-ups in a conversation already asked go on under the grant it was
asked under; only a withdrawal stops them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Exists, SQLColumnExpression, bindparam, exists, select, update
from sqlalchemy.orm import Session

from medchat import audit
from medchat.db import rows_changed
from medchat.errors import ConsentOutdated, ConsentRequired, ConsentVersionNotCurrent
from medchat.identity.principal import Principal
from medchat.models import Consent
from medchat.services.consent_texts import HEALTH_MESSAGING, ConsentText, current_text
from medchat.services.context import ServiceContext

__all__ = ["HEALTH_MESSAGING", "ConsentService", "ConsentState", "current_consent_exists"]


@dataclass(frozen=True)
class ConsentState:
    """Whether a member currently consents, to which version of the text, since when."""

    granted: bool
    version: str | None = None
    granted_at: datetime | None = None
    #: The version the server serves now: the member is asked again when ``version`` differs.
    current_version: str | None = None

    @property
    def outdated(self) -> bool:
        """Granted, but to another version than the current one."""
        return self.granted and self.version != self.current_version


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

    def current_text(self) -> ConsentText:
        """The consent text members agree to now (``GET /api/v1/consent``)."""
        return current_text(self.runtime.settings)

    def state(self, account_id: uuid.UUID) -> ConsentState:
        """The member's current health-messaging consent (``granted=False`` if none)."""
        current = self.runtime.settings.consent_version
        row = self._current_row(account_id)
        if row is None:
            return ConsentState(granted=False, current_version=current)
        return ConsentState(
            granted=True, version=row.version, granted_at=row.granted_at, current_version=current
        )

    def require_current_version(self, member_id: uuid.UUID) -> None:
        """Before a new question: a grant, and to the text served now.

        Raises ``ConsentRequired`` without a grant, ``ConsentOutdated`` (with the current
        version in ``details``) when the grant names another version.
        """
        state = self.state(member_id)
        if not state.granted:
            raise ConsentRequired
        if state.outdated:
            raise ConsentOutdated(details={"current_version": state.current_version})

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
        Raises ``ConsentVersionNotCurrent`` for a version the server does not serve now.
        """
        served = self.runtime.settings.consent_version
        if version != served:
            raise ConsentVersionNotCurrent(details={"current_version": served})
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
        return ConsentState(granted=True, version=version, granted_at=now, current_version=served)

    def withdraw(self, actor: Principal) -> None:
        """End the current grant; nothing to do (and nothing audited) when there is none."""
        self.withdraw_for(actor.id)

    def withdraw_for(self, member_id: uuid.UUID) -> None:
        """End ``member_id``'s current grant, whoever acts (the member, or an objection
        recorded for them); audited with the member as subject."""
        ended = self._end_current(member_id, self.runtime.clock.now())
        if ended:
            audit.record(
                self.session,
                "consent.withdraw",
                target_type="account",
                target_id=member_id,
                subject_id=member_id,
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
