"""The access-log mapping without HTTP: which audit entries a member sees, and as what.

Entries are written with ``audit.record`` (real chain, real database) for every action the
mapping names and for look-alikes it must not show; the service's SQL filter and its
``shown_action`` mapping must agree entry by entry.
"""

from __future__ import annotations

import uuid

import pytest

from access_control.roles import Role
from medchat import audit
from medchat.errors import Forbidden
from medchat.services.access_log import RULES, AccessLogService, shown_action
from tests.support.accounts import make_member, make_staff
from tests.support.sessions import sign_in

#: (audit action, actor role, what the member sees: None = not listed)
CASES = [
    ("content.read.conversation", Role.CLINICIAN, "read"),
    ("audit.identify", "cli", "identified"),
    ("content.read.messages", Role.CLINICIAN, "read"),
    ("content.read.attachment", Role.CLINICIAN, "read"),
    ("message.send", Role.CLINICIAN, "reply"),
    ("attachment.upload", Role.CLINICIAN, "reply"),
    ("conversation.close", Role.CLINICIAN, "close"),
    ("archive.search", Role.COMPLIANCE, "retrieval"),
    ("archive.retrieval.request", Role.COMPLIANCE, "retrieval"),
    ("archive.retrieval.approve", Role.COMPLIANCE, "retrieval"),
    ("archive.retrieval.open", Role.COMPLIANCE, "retrieval"),
    ("archive.retrieval.attachment", Role.COMPLIANCE, "retrieval"),
    ("archive.retrieval.export", Role.COMPLIANCE, "retrieval"),
    ("retention.destroy", None, "retention"),
    ("retention.seal", None, "retention"),
    ("retention.archive_destroy", None, "retention"),
    ("retention.destroy", "system", "retention"),
    # Restrictions and objections: the member's own too; the data protection officer's acts.
    ("privacy.restrict", Role.MEMBER, "restrict"),
    ("privacy.objection", Role.MEMBER, "object"),
    ("privacy.restriction_lift", Role.DPO, "lift_restriction"),
    ("dpo.export_notice", Role.DPO, "export_request"),
    ("profile.update", Role.DPO, "rectification"),
    # Look-alikes and other people's actions that must stay out.
    ("message.send", Role.MEMBER, None),
    ("attachment.upload", Role.MEMBER, None),
    ("conversation.start", Role.MEMBER, None),
    ("conversation.seal", Role.MEMBER, None),
    ("consent.grant", Role.MEMBER, None),
    ("profile.update", Role.MEMBER, None),
    ("member.export", Role.MEMBER, None),
    ("conversation.rewrap", Role.CLINICIAN, None),
    ("archive.verify", Role.COMPLIANCE, None),
    ("content.read.messages", Role.ADMIN, None),
    ("archive.retrieval.open", Role.CLINICIAN, None),
    ("contentXread", Role.CLINICIAN, None),
    ("retentionXdestroy", None, None),
    ("account.disable", Role.ADMIN, None),
    ("dpo.export_notice", Role.ADMIN, None),
    ("dpo.erasure", Role.DPO, None),
]


@pytest.mark.parametrize(("action", "role", "shown"), CASES)
def test_each_audit_action_maps_to_one_access_log_action(action, role, shown):
    assert shown_action(action, role) == shown


def test_the_documented_actions_are_exactly_these():
    assert {rule.shown_as for rule in RULES} == {
        "read",
        "reply",
        "close",
        "retrieval",
        "retention",
        "restrict",
        "object",
        "lift_restriction",
        "export_request",
        "rectification",
        "identified",
    }


def test_the_query_selects_exactly_what_the_mapping_shows(runtime):
    member = make_member(runtime)
    other = make_member(runtime)
    doctor = make_staff(runtime, Role.CLINICIAN)
    conversation = uuid.uuid4()
    with runtime.database.transaction() as session:
        for action, role, _shown in CASES:
            staff = role in (Role.CLINICIAN, Role.COMPLIANCE, Role.ADMIN)
            actor = member.id if role == Role.MEMBER else (doctor.id if staff else None)
            audit.set_context(session, audit.AuditContext(actor_id=actor, actor_role=role))
            audit.record(
                session,
                action,
                target_type="conversation",
                target_id=conversation,
                subject_id=member.id,
            )
            # The same entries about someone else, and a refused attempt about the member.
            audit.record(session, action, target_type="conversation", subject_id=other.id)
            audit.record(session, action, subject_id=member.id, outcome="denied")
    principal = sign_in(runtime, member).principal
    with runtime.database.transaction() as session:
        page = AccessLogService(session, runtime).page(principal, limit=100)
    expected = [shown for _action, _role, shown in reversed(CASES) if shown is not None]
    assert [item.action for item in page.items] == expected
    assert {item.conversation_id for item in page.items} == {conversation}
    assert page.next_cursor is None


def test_only_members_have_an_access_log(runtime):
    doctor = make_staff(runtime, Role.CLINICIAN)
    principal = sign_in(runtime, doctor).principal
    with runtime.database.transaction() as session, pytest.raises(Forbidden):
        AccessLogService(session, runtime).page(principal, limit=10)
