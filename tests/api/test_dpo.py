"""The data protection officer acts for a member on a mailed request (docs/security.md, "The
data protection officer"; issue 16 item 8): each act with its ticket, audited, in the member's
access log, and nothing of the member's content in any answer the officer gets."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat.models import Account, AuditEntry, Conversation
from tests.support.accounts import bearer, code_for, login, make_staff
from tests.support.cli import cli_runner
from tests.support.mailbox import delivered
from tests.support.rights import (
    ACCESS_LOG,
    ANSWER,
    FILE_NAME,
    FOLLOW_UP,
    QUESTION,
    SECOND_QUESTION,
    SUBJECT,
    a_member_with_history,
)

DPO = "/api/v1/dpo"
TICKET = "DPO-2026/0042"
#: What the officer must never be handed: content, and the profile values they do not send.
CANARIES = (SUBJECT, QUESTION, ANSWER, FOLLOW_UP, SECOND_QUESTION, FILE_NAME, "+33 6 12 34 56 78")


@pytest.fixture
def app(make_app, tmp_path):
    return make_app(mail_url=f"file://{tmp_path / 'mail'}")


@pytest.fixture
def history(client, runtime):
    return a_member_with_history(client, runtime)


@pytest.fixture
def officer(client, runtime):
    return bearer(login(client, runtime, make_staff(runtime, Role.DPO)))


def _act(client, officer, act: str, history, **body):
    response = client.post(
        f"{DPO}/{act}",
        json={"email": history.member.email, "ticket": TICKET, **body},
        headers=officer,
    )
    text = response.get_data(as_text=True)
    for canary in CANARIES:
        assert canary not in text, (act, canary)
    return response


def _dpo_entries(runtime):
    with runtime.database.transaction() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.actor_role == Role.DPO).order_by(AuditEntry.seq)
            )
        )


def test_an_export_request_is_delivered_to_the_member_not_the_officer(
    client, runtime, history, officer, tmp_path
):
    response = _act(client, officer, "export", history)
    assert response.status_code == 202
    assert response.get_json() == {"status": "notified", "ticket": TICKET}
    ((message, raw),) = delivered(runtime, tmp_path / "mail")
    assert message["To"] == history.member.email
    assert TICKET in message.get_content()
    for canary in CANARIES:
        assert canary.encode() not in raw  # nothing of the content by mail either
    log = client.get(ACCESS_LOG, headers=history.auth).get_json()["items"]
    assert (log[0]["action"], log[0]["actor"]) == ("export_request", "data protection officer")
    (entry,) = [e for e in _dpo_entries(runtime) if e.action == "dpo.export_notice"]
    assert entry.subject_id == history.member.id
    assert json.loads(entry.details) == {"ticket": TICKET}


def test_the_officer_restricts_lifts_and_records_an_objection(client, runtime, history, officer):
    restricted = _act(client, officer, "restriction", history, action="restrict")
    assert restricted.status_code == 200
    assert restricted.get_json()["restriction"]["ground"] == "member_request"
    state = client.get("/api/v1/me/restriction", headers=history.auth).get_json()
    assert state["restricted"] is True
    assert _act(client, officer, "restriction", history, action="object").status_code == 200
    consent = client.get("/api/v1/me/consent", headers=history.auth).get_json()
    assert consent["health_messaging"]["granted"] is False
    lifted = _act(client, officer, "restriction", history, action="lift")
    assert lifted.get_json()["restriction"]["restricted"] is False

    log = client.get(ACCESS_LOG, headers=history.auth).get_json()["items"]
    officer_acts = [e["action"] for e in log if e["actor"] == "data protection officer"]
    assert officer_acts == ["lift_restriction", "object", "restrict"]
    privacy = [e for e in _dpo_entries(runtime) if e.action.startswith("privacy.")]
    assert {json.loads(e.details)["ticket"] for e in privacy} == {TICKET}
    assert {json.loads(e.details)["by"] for e in privacy} == {"dpo"}
    records = client.get("/api/v1/me/export", headers=history.auth).get_json()["restrictions"]
    assert {r["requested_by"] for r in records} == {"dpo"}


def test_the_officer_rectifies_profile_fields_and_sees_only_their_names(
    client, runtime, history, officer
):
    response = _act(
        client, officer, "rectification", history, changes={"last_name": "Durand-Leroy"}
    )
    assert response.status_code == 200
    assert response.get_json() == {"ticket": TICKET, "fields": ["last_name"]}
    assert client.get("/api/v1/me", headers=history.auth).get_json()["last_name"] == "Durand-Leroy"
    log = client.get(ACCESS_LOG, headers=history.auth).get_json()["items"]
    assert (log[0]["action"], log[0]["actor"]) == ("rectification", "data protection officer")
    (entry,) = [e for e in _dpo_entries(runtime) if e.action == "profile.update"]
    assert json.loads(entry.details) == {"fields": ["last_name"], "ticket": TICKET}
    assert "Durand-Leroy" not in entry.details
    bad = _act(client, officer, "rectification", history, changes={"email": "x@example.org"})
    assert bad.status_code == 422


def test_the_officer_erases_an_account_with_the_ticket(client, runtime, history, officer):
    response = _act(client, officer, "erasure", history)
    assert response.status_code == 202
    assert response.get_json() == {"status": "deleted", "ticket": TICKET}
    with runtime.database.transaction() as session:
        account = session.get(Account, history.member.id)
        assert account.status == "deleted"
        statuses = set(
            session.scalars(
                select(Conversation.status).where(Conversation.member_id == history.member.id)
            )
        )
    assert statuses == {"sealed"}
    deletion = [e for e in _dpo_entries(runtime) if e.action == "account.delete"]
    assert json.loads(deletion[0].details)["ticket"] == TICKET
    # The member's old sign-in is gone; asking again finds nobody.
    assert client.get("/api/v1/me", headers=history.auth).status_code == 401
    assert _act(client, officer, "erasure", history).status_code == 404


def test_requests_for_nobody_or_staff_are_404_and_bad_tickets_422(
    client, runtime, history, officer
):
    for email in ("nobody@example.org", history.team.clinician.email):
        response = client.post(
            f"{DPO}/export", json={"email": email, "ticket": TICKET}, headers=officer
        )
        assert response.status_code == 404
    for ticket in ("", "has space", "Jeanne Moreau", "x" * 65):
        response = client.post(
            f"{DPO}/export",
            json={"email": history.member.email, "ticket": ticket},
            headers=officer,
        )
        assert response.status_code == 422, ticket


def test_only_the_officer_acts_and_the_officer_reads_no_content(client, runtime, history, officer):
    admin = bearer(login(client, runtime, make_staff(runtime, Role.ADMIN)))
    body = {"email": history.member.email, "ticket": TICKET}
    for other in (admin, history.auth, history.doctor_auth):
        assert client.post(f"{DPO}/export", json=body, headers=other).status_code == 403
    for path in (
        f"/api/v1/conversations/{history.answered_id}/messages",
        f"/api/v1/clinician/conversations/{history.answered_id}/messages",
        "/api/v1/me/export",
        "/api/v1/admin/audit",
    ):
        response = client.get(path, headers=officer)
        assert response.status_code == 403, path


def test_the_officer_answers_only_from_the_staff_networks(client, officer):
    response = client.post(
        f"{DPO}/export",
        json={"email": "a@example.org", "ticket": TICKET},
        headers=officer,
        environ_base={"REMOTE_ADDR": "203.0.113.5"},
    )
    assert (response.status_code, response.get_json()["error"]["code"]) == (
        403,
        "network_not_allowed",
    )


def _cli(app, runtime, officer_person, *args: str, password: str | None = None):
    runtime.clock.advance(seconds=30)  # a one-time code not used yet
    secret = f"{password or officer_person.password}\n{code_for(officer_person, runtime)}\n"
    return cli_runner(app).invoke(
        args=["dpo", *args, "--email", officer_person.email, "--json"], input=secret
    )


def test_the_officer_acts_from_the_command_line_with_password_and_code(
    app, client, runtime, history, tmp_path
):
    person = make_staff(runtime, Role.DPO)
    member = ["--member", history.member.email, "--ticket", TICKET]
    result = _cli(app, runtime, person, "restriction", "restrict", *member)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[-1])["restricted"] is True
    result = _cli(app, runtime, person, "rectify", *member, "--set", "phone=+33 7 00 00 00 00")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[-1]) == {"ticket": TICKET, "fields": ["phone"]}
    result = _cli(app, runtime, person, "export", *member)
    assert result.exit_code == 0, result.output
    for canary in CANARIES:
        assert canary not in result.output
    log = client.get(ACCESS_LOG, headers=history.auth).get_json()["items"]
    assert [e["action"] for e in log if e["actor"] == "data protection officer"][:3] == [
        "export_request",
        "rectification",
        "restrict",
    ]
    # A wrong password, another role, a bad field: exit 1, nothing done.
    wrong = _cli(app, runtime, person, "export", *member, password="not-the-password-1")
    assert wrong.exit_code == 1
    bad = _cli(app, runtime, person, "rectify", *member, "--set", "email=x@example.org")
    assert bad.exit_code == 1
    admin = make_staff(runtime, Role.ADMIN)
    assert _cli(app, runtime, admin, "export", *member).exit_code == 1
    result = _cli(app, runtime, person, "erase", *member, "--yes")
    assert result.exit_code == 0, result.output
    with runtime.database.transaction() as session:
        assert session.get(Account, history.member.id).status == "deleted"
