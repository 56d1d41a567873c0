"""Clinicians' canned replies (issue 17, item 5): personal, sealed for their owner's session
only, audited without their text, refused to everyone else."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from access_control.roles import Role
from medchat.models import PersonalKey, ReplyTemplate
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.audit import audit_entries
from tests.support.messaging import care_team
from tests.support.retention import every_stored_value
from tests.support.rotation import grant

TEMPLATES = "/api/v1/clinician/templates"
TEXT = {"title": "Sprain canary T5", "body": "Rest, ice, compression canary T5."}


@pytest.fixture
def team(runtime):
    return care_team(runtime)


@pytest.fixture
def doctor(client, runtime, team):
    return login(client, runtime, team.clinician)


def colleague_of(runtime, team):
    """Another clinician holding the physician key (every clinician route asks for it)."""
    colleague = make_staff(runtime, Role.CLINICIAN)
    grant(runtime, team.clinician, colleague)
    return colleague


def stored(runtime) -> list[ReplyTemplate]:
    with runtime.database.transaction() as session:
        rows = list(session.scalars(select(ReplyTemplate)))
        session.expunge_all()
    return rows


def test_create_list_update_delete_sealed_and_audited(client, runtime, doctor):
    created = client.post(TEMPLATES, json=TEXT, headers=bearer(doctor))
    assert created.status_code == 201, created.get_json()
    template = created.get_json()
    assert {template["title"], template["body"]} == set(TEXT.values())
    client.post(TEMPLATES, json={"title": "after", "body": "B"}, headers=bearer(doctor))
    listed = client.get(TEMPLATES, headers=bearer(doctor)).get_json()["items"]
    assert [item["title"] for item in listed] == ["after", TEXT["title"]]
    dump = every_stored_value(runtime)
    assert b"canary T5" not in dump
    path = f"{TEMPLATES}/{template['id']}"
    changed = client.put(path, json={"title": "Sprain", "body": "New."}, headers=bearer(doctor))
    assert changed.status_code == 200 and changed.get_json()["body"] == "New."
    assert client.get(path, headers=bearer(doctor)).get_json()["title"] == "Sprain"
    assert client.delete(path, headers=bearer(doctor)).status_code == 204
    assert client.get(path, headers=bearer(doctor)).status_code == 404
    actions = [e.action for e in audit_entries(runtime, prefix="reply_template.")]
    assert actions == [
        "reply_template.create",
        "reply_template.create",
        "reply_template.update",
        "reply_template.delete",
    ]
    assert all("canary" not in (e.details or "") for e in audit_entries(runtime))


def test_bad_bodies_are_422_and_change_nothing(client, runtime, doctor):
    for body in (
        {},
        {"title": "", "body": "x"},
        {"title": "x" * 101, "body": "x"},
        {"title": "t", "body": "  "},
        {"title": "t", "body": "x" * 10_001},
        {"title": "t", "body": "x", "extra": 1},
    ):
        assert client.post(TEMPLATES, json=body, headers=bearer(doctor)).status_code == 422, body
    assert stored(runtime) == []


def test_a_colleague_sees_none_and_touches_none(client, runtime, team, doctor):
    created = client.post(TEMPLATES, json=TEXT, headers=bearer(doctor)).get_json()
    colleague = login(client, runtime, colleague_of(runtime, team))
    path = f"{TEMPLATES}/{created['id']}"
    assert client.get(TEMPLATES, headers=bearer(colleague)).get_json()["items"] == []
    assert client.get(path, headers=bearer(colleague)).status_code == 404
    assert client.put(path, json=TEXT, headers=bearer(colleague)).status_code == 404
    assert client.delete(path, headers=bearer(colleague)).status_code == 404
    assert len(stored(runtime)) == 1


def test_members_admins_and_officers_are_refused(client, runtime, doctor):
    for role in (Role.ADMIN, Role.COMPLIANCE):
        tokens = login(client, runtime, make_staff(runtime, role))
        assert client.post(TEMPLATES, json=TEXT, headers=bearer(tokens)).status_code == 403
    member = login(client, runtime, make_member(runtime))
    assert client.get(TEMPLATES, headers=bearer(member)).status_code == 403
    assert stored(runtime) == []


def test_a_template_moved_to_another_owner_opens_nothing(client, runtime, team, doctor):
    """A database writer gives the doctor's template to a colleague (same key id column too):
    the key is derived from the owner's personal key and the owner is in the associated data."""
    client.post(TEMPLATES, json=TEXT, headers=bearer(doctor))
    colleague = colleague_of(runtime, team)
    theirs = login(client, runtime, colleague)
    with runtime.database.transaction() as session:
        key_id = session.scalar(
            select(PersonalKey.id).where(PersonalKey.account_id == colleague.id)
        )
        session.execute(update(ReplyTemplate).values(owner_id=colleague.id, personal_key_id=key_id))
    answer = client.get(TEMPLATES, headers=bearer(theirs))
    assert answer.status_code == 409
    assert "canary" not in answer.get_data(as_text=True)
