"""The admin audit view does not tell which members consult a doctor (issue 16 item 2).

Admins see staff and admin events in full; an event about a member shows a pseudonym that
changes each UTC day, the action's class for medical use, and never the member's id, e-mail or
network address. ``medchat audit identify`` is the audited way back to the member.
"""

from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat.models import AuditEntry
from medchat.services.audit_log import MEDICAL_CLASSES, action_class, member_pseudonym
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.cli import cli_runner
from tests.support.messaging import asked, care_team, claim, give_consent

AUDIT = "/api/v1/admin/audit"
MEMBER_ADDRESS = "198.51.100.23"
MEMBER_EMAIL = "pseudonym.canary.q4@example.org"


@pytest.fixture
def admin_headers(client, runtime) -> dict[str, str]:
    return bearer(login(client, runtime, make_staff(runtime, Role.ADMIN)))


def _scenario(app, client, runtime):
    """A member asks from their own address; a clinician reads and answers."""
    team = care_team(runtime)
    member = make_member(runtime, email=MEMBER_EMAIL)
    from_home = app.test_client()
    from_home.environ_base["REMOTE_ADDR"] = MEMBER_ADDRESS
    tokens = login(from_home, runtime, member)
    give_consent(from_home, tokens)
    conversation = asked(from_home, tokens, "Pseudonym scenario question")
    clinician = bearer(login(client, runtime, team.clinician))
    path = f"/api/v1/clinician/conversations/{conversation}"
    assert client.get(path, headers=clinician).status_code == 200
    claim(client, clinician, conversation)
    reply = client.post(f"{path}/messages", json={"body": "Rest."}, headers=clinician)
    assert reply.status_code == 201, reply.get_json()
    return member, team, conversation


def _all_items(client, headers) -> list[dict]:
    items: list[dict] = []
    query: dict = {"limit": 100}
    while True:
        page = client.get(AUDIT, query_string=query, headers=headers)
        assert page.status_code == 200, page.get_json()
        items += page.get_json()["items"]
        if page.get_json()["next_cursor"] is None:
            return items
        query["cursor"] = page.get_json()["next_cursor"]


def test_events_about_a_member_name_no_member_id_email_or_address(
    app, client, runtime, admin_headers
):
    member, team, conversation = _scenario(app, client, runtime)

    items = _all_items(client, admin_headers)

    about_member = [item for item in items if item["member"] is not None]
    raw = json.dumps(about_member)
    assert str(member.id) not in raw and member.id.hex not in raw
    assert MEMBER_EMAIL not in raw and MEMBER_ADDRESS not in raw
    assert conversation not in raw  # a conversation id leads back to its member
    # Not anywhere in the page either (staff events never name the member).
    whole = json.dumps(items)
    assert str(member.id) not in whole and MEMBER_ADDRESS not in whole
    assert conversation not in whole
    # Medical use shows as a class only, under one pseudonym for the day.
    actions = {item["action"] for item in about_member}
    assert {"conversation", "consent", "read"} <= actions
    assert not any("." in action and action.split(".")[0] in MEDICAL_CLASSES for action in actions)
    assert len({item["member"] for item in about_member}) == 1
    assert about_member[0]["member"].startswith("M-")
    # The clinician's read is a staff event about the member: the clinician shown in full.
    reads = [i for i in about_member if i["action"] == "read" and i["actor_role"] == "clinician"]
    assert reads and all(i["actor_id"] == str(team.clinician.id) for i in reads)
    # The database still holds the subject for the member's own access log.
    with runtime.database.transaction() as session:
        subjects = set(session.scalars(select(AuditEntry.subject_id)))
    assert member.id in subjects


def test_staff_and_admin_events_are_shown_in_full(client, runtime, admin_headers):
    created = client.post(
        "/api/v1/admin/accounts",
        json={
            "email": "new.clinician@clinic.example.org",
            "role": "clinician",
            "first_name": "Margot",
            "last_name": "Zylberstein",
        },
        headers=admin_headers,
    )
    assert created.status_code == 201
    items = _all_items(client, admin_headers)
    create = next(i for i in items if i["action"] == "account.create")
    assert create["member"] is None
    assert create["actor_role"] == "admin" and create["actor_id"] is not None
    assert create["target_id"] == created.get_json()["id"]
    assert create["details"] == {"role": "clinician"}
    login_entry = next(i for i in items if i["action"].startswith("auth.") and i["address"])
    assert login_entry["address"] == "127.0.0.1"


def test_the_pseudonym_is_stable_within_a_day_and_differs_across_days(client, runtime, clock):
    member = make_member(runtime)
    clock.set(clock.now().replace(hour=1))
    login(client, runtime, member)
    clock.advance(hours=20)
    login(client, runtime, member)
    clock.advance(hours=4)  # the next UTC day
    login(client, runtime, member)

    admin_headers = bearer(login(client, runtime, make_staff(runtime, Role.ADMIN)))
    items = [i for i in _all_items(client, admin_headers) if i["member"] is not None]
    by_day: dict[str, set[str]] = {}
    for item in items:
        by_day.setdefault(item["at"][:10], set()).add(item["member"])
    assert len(by_day) == 2
    # One pseudonym per day, the two days' different; derived from the integrity key and the
    # day (the entry's, from the injected clock), nothing the database holds.
    assert {day: names for day, names in by_day.items()} == {
        day: {member_pseudonym(runtime.keys.integrity, date.fromisoformat(day), member.id)}
        for day in by_day
    }
    first, second = (next(iter(names)) for names in by_day.values())
    assert first != second


def test_action_classes():
    assert action_class("content.read.conversation") == "read"
    assert action_class("content.reseal") == "content"
    assert action_class("conversation.start") == "conversation"
    assert action_class("member.export") == "export"
    assert action_class("auth.login") is None
    assert action_class("profile.update") is None


def test_identify_names_the_member_and_is_itself_audited(app, client, runtime, admin_headers):
    member = make_member(runtime)
    login(client, runtime, member)
    with runtime.database.transaction() as session:
        seq = session.scalar(
            select(AuditEntry.seq).where(AuditEntry.target_id == str(member.id)).limit(1)
        )
    result = cli_runner(app).invoke(
        args=["audit", "identify", str(seq), "--ticket", "DPO-2027-0042", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"seq": seq, "member_id": str(member.id)}
    with runtime.database.transaction() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "audit.identify"))
        assert entry.subject_id == member.id
        assert json.loads(entry.details) == {"seq": seq, "ticket": "DPO-2027-0042"}
    # ... and the member is told, in their access log.
    tokens = login(client, runtime, member)
    log = client.get("/api/v1/me/access-log", headers=bearer(tokens)).get_json()["items"]
    assert [(i["action"], i["actor"]) for i in log] == [("identified", "operator")]
    refused = cli_runner(app).invoke(
        args=["audit", "identify", str(seq), "--ticket", "Jeanne Moreau"]
    )
    assert refused.exit_code != 0
