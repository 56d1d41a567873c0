"""When a conversation's question was asked, as the audit trail witnessed it.

Retention destroys (or seals) a live conversation two years after its question, and the row's
``created_at`` is outside every tag: a database writer who backdated it had the run destroy a
live conversation years early, recorded as an ordinary ``retention.destroy``, or, with
``MEDCHAT_RETENTION_SEAL_EXPIRED``, seal it and so lift its archive gate, after which one
compliance officer with a copy of the database opened content that was still live, without a
second officer. The question's time is also in the audit trail: the ``conversation.start``
entry the request that asked it appended, hashed and MAC'd under a key outside the database
(``medchat.audit.entry_format.is_genuine``). A run acts on a conversation only when that entry,
where one verifies, agrees that the question came before the cutoff.

Entries that do not verify (planted) are not witnesses. A conversation with no entry at all
(written before the audit trail named the action, or loaded in bulk) is judged by its row, as
before: on PostgreSQL the application's login may not delete audit entries
(``deploy/postgres-roles.sql``), so a writer with that login cannot remove the witness of a
conversation it has.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from medchat import audit
from medchat.audit.entry_format import is_genuine
from medchat.models import AuditEntry, Conversation

log = logging.getLogger("medchat.retention")

#: The action of the entry that witnesses a question (``member_conversations``).
START = "conversation.start"


def contradicted(
    session: Session, audit_key: bytes, conversations: Sequence[Conversation], cutoff: datetime
) -> set[uuid.UUID]:
    """The ids among ``conversations`` whose genuine ``conversation.start`` entry says their
    question came at or after ``cutoff``: their row's ``created_at`` says otherwise, so it was
    moved, and nothing may be done on its word."""
    ids = {str(conversation.id): conversation.id for conversation in conversations}
    entries = session.scalars(
        select(AuditEntry).where(
            AuditEntry.target_id.in_(ids),
            AuditEntry.action == START,
            AuditEntry.target_type == "conversation",
        )
    )
    witnessed = {
        ids[cast(str, entry.target_id)]: entry.at
        for entry in entries
        if is_genuine(audit_key, entry)
    }
    return {conversation_id for conversation_id, at in witnessed.items() if at >= cutoff}


def drop_moved(
    session: Session,
    audit_key: bytes,
    due: list[Conversation],
    cutoff: datetime,
    action: str,
    run_id: uuid.UUID,
) -> tuple[list[Conversation], int]:
    """``due`` less the conversations ``contradicted`` finds, and how many those were: each
    left as it is, its refusal logged and audited (``action`` failed, ``refused:
    question_time``) in the run's transaction."""
    moved = contradicted(session, audit_key, due, cutoff)
    for conversation in (c for c in due if c.id in moved):
        log.error("retention left conversation %s: question time moved", conversation.id)
        audit.record(
            session,
            action,
            outcome="failed",
            target_type="conversation",
            target_id=conversation.id,
            subject_id=conversation.member_id,
            details={"run_id": str(run_id), "refused": "question_time"},
        )
    return [c for c in due if c.id not in moved], len(moved)
