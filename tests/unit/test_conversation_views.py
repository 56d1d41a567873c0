"""One definition of a conversation's view for members and clinicians, the audience's part
added on top: the member's view holds their id, a clinician's only the patient object
(SECURITY-MODEL "Who uses it"). The same for the response schemas: the contract of each
audience's body is pinned here field by field."""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import UTC, date, datetime

from medchat.schemas.clinician import CaseSchema
from medchat.schemas.conversations import ConversationSchema, MessageSchema
from medchat.schemas.member import ExportConversationSchema, ExportMessageSchema
from medchat.services.conversation_views import CaseView, ConversationSummary, ConversationView
from medchat.services.patient_view import PatientView

#: What the moment's workflow adds (issue 17): a claim's existence, urgency, read state.
WORKFLOW = {"in_review", "unread_count", "read_through", "read_by_other_through"}
SUMMARY = {
    "id",
    "subject",
    "status",
    "created_at",
    "last_message_at",
    "status_since",
    "readable",
    "unavailable",
    "urgent",
    *WORKFLOW,
}
PATIENT = PatientView(
    pseudonym="P-ABCDEFGH", first_name="Ada", birth_date=date(1990, 1, 2), sex="f"
)


def _names(cls: type) -> set[str]:
    return {item.name for item in fields(cls)}


def test_each_audience_adds_its_part_to_one_summary() -> None:
    assert _names(ConversationSummary) == SUMMARY
    assert _names(ConversationView) == SUMMARY | {"member_id", "messages"}
    assert _names(CaseView) == SUMMARY | {"patient", "claim", "overdue"}


def test_a_clinicians_view_keeps_the_summary_and_drops_the_member() -> None:
    view = ConversationView(
        id=uuid.uuid4(),
        subject="Rash",
        status="open",
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
        last_message_at=datetime(2030, 1, 2, tzinfo=UTC),
        status_since=datetime(2030, 1, 1, tzinfo=UTC),
        member_id=uuid.uuid4(),
        readable=False,
        unavailable="integrity_failed",
    )
    case = view.for_clinician(PATIENT)
    assert {name: getattr(case, name) for name in SUMMARY} == {
        name: getattr(view, name) for name in SUMMARY
    }
    assert case.patient == PATIENT
    assert not hasattr(case, "member_id")


def test_the_response_schemas_keep_their_fields() -> None:
    assert set(ConversationSchema().fields) == SUMMARY
    assert set(CaseSchema().fields) == SUMMARY | {"patient", "claim", "overdue"}
    export = ExportConversationSchema().fields
    assert set(export) == (SUMMARY - WORKFLOW) | {"closed_at", "history_pending", "messages"}
    # The export states every key; the API's subject and author_name may be left out.
    assert export["subject"].required and not ConversationSchema().fields["subject"].required
    assert set(ExportMessageSchema().fields) == set(MessageSchema().fields)
    assert ExportMessageSchema().fields["author_name"].required
    assert not MessageSchema().fields["author_name"].required
    readable = CaseSchema().fields["readable"].metadata["description"]
    assert readable == "False when the conversation failed an integrity check."
