"""Who has a waiting question: claims, hand-overs, releases, and the rule that answering needs one.

Issue 17, item 3. A clinician claims a question so that colleagues see it as taken and do not
answer it twice. The rules, all here:

- A claim lasts ``MEDCHAT_CLAIM_MINUTES`` (30) from when it was taken, handed over or last
  used to answer; after that it is dead (treated as absent, replaced by the next claim) and
  the question is back in the queue for everyone.
- Claiming a question someone else holds is refused (409 ``claimed_by_other``, naming the
  holder by display name: staff only). Claiming one's own again renews it. Two clinicians
  racing: each locks the conversation row first (``ConversationService.lock_for_write``), so
  the second sees the first's claim; the unique constraint on the conversation is the last word.
- **Answering needs the answerer's live claim** (a message or a file from a clinician): no
  claim or an expired one is 409 ``claim_required``, someone else's is 409
  ``claimed_by_other``, and nothing is written. There is no implicit claim: a clinician who
  answers first and claims after would race a colleague who claimed in between.
- A hand-over moves the claim to a named active colleague (not oneself), with a reason from
  ``HANDOFF_REASONS``: a code, never free text (a note could hold health data and would have
  to be sealed, re-sealed by every rotation and archived like content; the conversation itself
  is where the medical text lives). Releasing ends one's own claim.
- Members learn only that "a doctor is looking at your question" (``in_review``), never who.

Every change is audited with the member as subject; the member's access log does not list
claims (it lists reads and answers, ``services.access_log``), as a member learns no more than
``in_review``. Claim rows are tagged (``medchat.models.claims``): a planted or altered one
is refused when loaded (409 ``row_integrity_failed``); lists skip it (the queue still serves).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat import audit
from medchat.errors import ClaimedByOther, ClaimRequired, ValidationFailed
from medchat.identity.principal import Principal
from medchat.models import (
    Account,
    AccountStatus,
    Conversation,
    ConversationClaim,
    ConversationRow,
)
from medchat.services.context import ServiceContext
from medchat.services.display_names import display_names
from medchat.storage.row_integrity import intact

#: Why a question was handed over: codes only, so no health data is stored in clear.
HANDOFF_REASONS = ("shift_end", "specialty", "second_opinion", "workload", "other")

MINE = "mine"
OTHER = "other"


@dataclass(frozen=True)
class ClaimView:
    """A live claim as a clinician sees it: whose (``mine`` or ``other``), by whom, until when."""

    state: str
    clinician_name: str | None
    claimed_at: datetime
    expires_at: datetime
    handed_by_name: str | None = None
    reason: str | None = None


#: A conversation's claim row, built once (building a statement costs more than running it).
_CLAIM = select(ConversationClaim).where(
    ConversationClaim.conversation_id == bindparam("conversation_id")
)


class ClaimBook:
    """Claims on conversations, for one unit of work (the caller locks the conversation)."""

    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime

    def _now(self) -> datetime:
        return self.runtime.clock.now()

    def _row(self, conversation_id: uuid.UUID) -> ConversationClaim | None:
        """The claim row, live or dead (a tampered row raises ``RowIntegrityFailure``)."""
        return self.session.scalar(_CLAIM, {"conversation_id": conversation_id})

    def live(self, conversation_id: uuid.UUID) -> ConversationClaim | None:
        row = self._row(conversation_id)
        return row if row is not None and row.expires_at > self._now() else None

    def live_of(self, conversation_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, ConversationClaim]:
        """The live claims on these conversations (for a list: a tampered row is left out,
        refused and audited, and the list is served)."""
        ids = list(conversation_ids)
        if not ids:
            return {}
        rows = intact(
            self.session,
            select(ConversationClaim).where(
                ConversationClaim.conversation_id.in_(ids),
                ConversationClaim.expires_at > self._now(),
            ),
        )
        return {row.conversation_id: row for row in rows}

    def views(
        self, actor: Principal, claims: dict[uuid.UUID, ConversationClaim]
    ) -> dict[uuid.UUID, ClaimView]:
        """Each claim as ``actor`` is shown it (display names in one query)."""
        people = [row.clinician_id for row in claims.values()]
        people += [row.handed_by for row in claims.values() if row.handed_by is not None]
        names = display_names(self.session, people)
        return {
            conversation_id: ClaimView(
                state=MINE if row.clinician_id == actor.id else OTHER,
                clinician_name=names.get(row.clinician_id),
                claimed_at=row.claimed_at,
                expires_at=row.expires_at,
                handed_by_name=names.get(row.handed_by) if row.handed_by else None,
                reason=row.reason,
            )
            for conversation_id, row in claims.items()
        }

    def view(self, actor: Principal, conversation_id: uuid.UUID) -> ClaimView | None:
        """The live claim shown with a case: a tampered row is left out (refused and audited)
        and the case is served; only claiming and answering refuse it."""
        return self.views(actor, self.live_of([conversation_id])).get(conversation_id)

    def colleagues(self, actor: Principal) -> list[tuple[uuid.UUID, str]]:
        """Whom ``actor`` may hand a question to: the other active clinicians, by first name
        and display name (staff see each other's names)."""
        rows = self.session.execute(
            select(Account.id, Account.first_name_ciphertext, Account.display_name).where(
                Account.role == Role.CLINICIAN,
                Account.status == AccountStatus.ACTIVE,
                Account.id != actor.id,
            )
        )
        profiles = self.runtime.profiles  # first names are sealed at rest (issue 16, item 4)
        named = [
            (
                row.id,
                profiles.open(row.id, "first_name", row.first_name_ciphertext) or "",
                row.display_name or "clinician",
            )
            for row in rows
        ]
        named.sort(key=lambda item: (item[1].casefold(), str(item[0])))
        return [(account_id, f"{first} ({shown})") for account_id, first, shown in named]

    def _refuse_other(self, row: ConversationClaim) -> None:
        name = display_names(self.session, [row.clinician_id]).get(row.clinician_id)
        raise ClaimedByOther(details={"claimed_by": name, "expires_at": row.expires_at.isoformat()})

    def _audit(self, action: str, conversation: Conversation, **details: str) -> None:
        audit.record(
            self.session,
            f"conversation.{action}",
            target_type="conversation",
            target_id=conversation.id,
            subject_id=conversation.member_id,
            details=details or None,
        )

    def take(self, actor: Principal, conversation: Conversation) -> ConversationClaim:
        """Claim (or renew one's own claim on) a locked conversation."""
        now = self._now()
        row = self._row(conversation.id)
        if row is not None and row.expires_at > now and row.clinician_id != actor.id:
            self._refuse_other(row)
        if row is None:
            row = ConversationClaim(conversation_id=conversation.id)
            self.session.add(row)
        row.clinician_id = actor.id
        row.claimed_at = now
        row.expires_at = now + self.runtime.settings.claim_ttl
        row.handed_by = None
        row.reason = None
        self.session.flush()
        self._audit("claim", conversation)
        return row

    def _own(self, actor: Principal, conversation: ConversationRow) -> ConversationClaim:
        """The actor's live claim on the conversation, or the 409 that says why not."""
        row = self.live(conversation.id)
        if row is None:
            raise ClaimRequired
        if row.clinician_id != actor.id:
            self._refuse_other(row)
        return row

    def release(self, actor: Principal, conversation: Conversation) -> None:
        """End one's own claim: the question is back in the queue."""
        row = self._own(actor, conversation)
        self.session.delete(row)
        self.session.flush()
        self._audit("claim_release", conversation)

    def hand_over(
        self, actor: Principal, conversation: Conversation, to: uuid.UUID, reason: str
    ) -> ConversationClaim:
        """Move one's own claim to an active colleague, renewed from now."""
        row = self._own(actor, conversation)
        if reason not in HANDOFF_REASONS:
            raise ValidationFailed(details={"reason": ["Not a hand-over reason."]})
        colleague = self.session.get(Account, to)
        if (
            to == actor.id
            or colleague is None
            or colleague.role != Role.CLINICIAN
            or colleague.status != AccountStatus.ACTIVE
        ):
            raise ValidationFailed(details={"to": ["Not an active colleague."]})
        now = self._now()
        row.clinician_id = to
        row.handed_by = actor.id
        row.reason = reason
        row.claimed_at = now
        row.expires_at = now + self.runtime.settings.claim_ttl
        self.session.flush()
        self._audit("claim_handoff", conversation, to=str(to), reason=reason)
        return row

    def require_for_answer(self, actor: Principal, conversation: ConversationRow) -> None:
        """A clinician's answer needs their own live claim, which the answer renews."""
        if actor.role != Role.CLINICIAN:
            return
        row = self._own(actor, conversation)
        row.expires_at = self._now() + self.runtime.settings.claim_ttl
        self.session.flush()
