"""A conversation that fails an integrity check is refused and audited, and never breaks a list.

Someone who can write the database can alter one conversation's key-set tag, its commitment, a
wrap or a sealed field (SECURITY-MODEL key hierarchy 10). Opening it then fails, as it must:
``KeyIntegrityFailure`` from ``medchat.keys.conversation_keys``, ``DecryptionFailed`` from
``medchat.keys.sealing``. What must not happen is one such row taking down every list it appears in
(issue 11, finding 9: the whole clinician queue answered 500). The rule, in one place:

- In a list that opens several conversations (the clinician queue and the console's, the
  member's conversations, the member's export and its FHIR form), the item is *refused*: shown
  without content (``readable`` false, ``unavailable`` ``"integrity_failed"``), and one
  ``conversation.integrity_refused`` entry is audited per refused item per request (target the
  conversation, subject its member, the kind of failure; never content). The rest is served.
  A clinician's list also refuses a conversation no key of the session opens (its physician
  wraps deleted): every live conversation has one, so that too is a tampered row.
- Reading one tampered conversation (the conversation, its messages, a reply, an upload)
  answers 409 ``key_integrity_failed``, with the same entry written after the rollback.

Every refusal is logged (ids and the failure's kind, no content) for the operator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from access_control.crypto import DecryptionFailed, IntegrityCheckFailed
from medchat import audit
from medchat.errors import KeyIntegrityFailure, NotFound
from medchat.models import Conversation, ConversationRow

log = logging.getLogger("medchat.integrity")

#: What opening a tampered conversation raises: a key (tag, commitment, wrap) or a sealed field.
INTEGRITY_FAILURES = (KeyIntegrityFailure, DecryptionFailed, IntegrityCheckFailed)
REFUSED = "conversation.integrity_refused"
#: ``ConversationView.unavailable`` of a refused conversation.
INTEGRITY_FAILED = "integrity_failed"
REFUSED_MESSAGE = "This conversation failed its integrity check and cannot be opened."

_KINDS: dict[type[Exception], str] = {
    KeyIntegrityFailure: "key",
    DecryptionFailed: "content",
    IntegrityCheckFailed: "content",
    NotFound: "no_key",
}


def _audit(
    write: Callable[..., None],
    session: Session,
    conversation: ConversationRow,
    error: Exception,
    where: str,
) -> None:
    kind = _KINDS.get(type(error), type(error).__name__)
    log.error("conversation %s refused in a %s: %s check failed", conversation.id, where, kind)
    write(
        session,
        REFUSED,
        outcome="failed",
        target_type="conversation",
        target_id=conversation.id,
        subject_id=conversation.member_id,
        details={"failure": kind, "in": where},
    )


def refuse_listed(session: Session, conversation: Conversation, error: Exception) -> None:
    """Audit one refused item of a list; the list goes on (the entry commits with it)."""
    _audit(audit.record, session, conversation, error, "list")


@contextmanager
def refusing(session: Session, conversation: ConversationRow) -> Iterator[None]:
    """Around a read of one conversation: an integrity failure inside is audited (after the
    rollback) and raised as ``KeyIntegrityFailure`` (409 ``key_integrity_failed``)."""
    try:
        yield
    except INTEGRITY_FAILURES as error:
        _audit(audit.record_on_rollback, session, conversation, error, "read")
        if isinstance(error, KeyIntegrityFailure):
            raise
        raise KeyIntegrityFailure(REFUSED_MESSAGE) from error
