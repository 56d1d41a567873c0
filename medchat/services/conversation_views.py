"""What a reader of a conversation is shown: the views the services return, for members,
clinicians and the archive alike.

One definition of a conversation's view (``ConversationSummary``), the audience's part added
on top: the member's own view holds their id, a clinician's only the patient object
(SECURITY-MODEL "Who uses it"). ``medchat.services.message_views`` fills the messages from
rows and an opened DEK.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from medchat.services.patient_view import PatientView


@dataclass
class AttachmentView:
    id: uuid.UUID
    filename: str
    content_type: str
    size: int


@dataclass
class MessageView:
    id: uuid.UUID
    author: str
    author_name: str | None
    body: str
    created_at: datetime
    seq: int
    attachments: list[AttachmentView] = field(default_factory=list)


@dataclass(kw_only=True)
class ConversationSummary:
    """What every reader is shown of a conversation, members and clinicians alike. Each
    audience's view adds what it is shown of the member: ``ConversationView`` (the member's
    own) their id, ``CaseView`` (a clinician's) only the patient object."""

    id: uuid.UUID
    subject: str | None
    status: str
    created_at: datetime
    last_message_at: datetime
    #: When it entered its status (for an open one: since when the member has waited); the
    #: clinicians' lists are ordered on it.
    status_since: datetime
    #: False when the caller is shown no content (subject None); ``unavailable`` says why.
    readable: bool = True
    #: ``history_pending`` while a member's history waits to be re-sealed to their new key,
    #: ``integrity_failed`` for a conversation refused by ``conversation_refusals``.
    unavailable: str | None = None
    #: A clinician holds a live claim on it (``medchat.services.claims``): all a member
    #: learns is that "a doctor is looking at your question", never who.
    in_review: bool = False
    #: The member marked the question urgent (first in the open queue).
    urgent: bool = False
    #: Read state for the viewer (``medchat.services.read_markers``): the other side's
    #: messages past the viewer's marker, and up to which message time each side has read.
    unread_count: int = 0
    read_through: datetime | None = None
    read_by_other_through: datetime | None = None


@dataclass(kw_only=True)
class ConversationView(ConversationSummary):
    """A conversation as the services read it and a member is shown it."""

    member_id: uuid.UUID
    messages: list[MessageView] = field(default_factory=list)

    def for_clinician(self, patient: PatientView) -> CaseView:
        """This conversation as a clinician is shown it: the summary and ``patient``."""
        shared = {item.name: getattr(self, item.name) for item in fields(ConversationSummary)}
        return CaseView(**shared, patient=patient)


@dataclass(kw_only=True)
class CaseView(ConversationSummary):
    """A conversation as a clinician sees it: no member id (not even an attribute), only the
    patient view (SECURITY-MODEL: first name, birth date, sex, pseudonym)."""

    patient: PatientView
    #: The live claim on it, as this clinician sees it (``medchat.services.claims``).
    claim: Any = None
    #: Open and waiting longer than the response target (``MEDCHAT_RESPONSE_TARGET_HOURS``).
    overdue: bool = False


#: ``ConversationView.unavailable`` while a member's history waits for its re-wrap.
HISTORY_PENDING = "history_pending"
