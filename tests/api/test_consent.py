"""Consent to health messaging (API.md "Member"): versioned grants, withdrawal, audit."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from medchat.errors import ConfigurationError
from medchat.models import Consent, Conversation, Message
from tests.support.accounts import bearer, login, make_member
from tests.support.audit import audit_entries
from tests.support.messaging import (
    CONSENT,
    CONSENT_VERSION,
    CONVERSATIONS,
    ask,
    asked,
    care_team,
    consent_texts,
    count,
    give_consent,
    send,
)


@pytest.fixture
def member(runtime):
    return make_member(runtime)


@pytest.fixture
def tokens(client, runtime, member):
    return login(client, runtime, member)


def _consent_rows(runtime, member) -> list[Consent]:
    with runtime.database.transaction() as session:
        return list(
            session.scalars(
                select(Consent).where(Consent.account_id == member.id).order_by(Consent.granted_at)
            )
        )


def test_consent_is_not_granted_until_the_member_grants_it(client, tokens):
    response = client.get(CONSENT, headers=bearer(tokens))
    assert response.status_code == 200
    assert response.get_json() == {
        "health_messaging": {
            "granted": False,
            "version": None,
            "granted_at": None,
            "current_version": CONSENT_VERSION,
            "outdated": False,
        }
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_each_grant_is_a_versioned_audited_record(
    client, runtime, member, tokens, make_app, tmp_path
):
    granted = client.put(
        CONSENT, json={"health_messaging": True, "version": "2026-01"}, headers=bearer(tokens)
    )
    assert granted.status_code == 200
    now = runtime.clock.now().isoformat().replace("+00:00", "Z")
    expected = {
        "granted": True,
        "version": "2026-01",
        "granted_at": now,
        "current_version": "2026-01",
        "outdated": False,
    }
    assert granted.get_json() == {"health_messaging": expected}
    assert client.get(CONSENT, headers=bearer(tokens)).get_json()["health_messaging"] == expected

    # The same version again is idempotent: no second record.
    give_consent(client, tokens, "2026-01")
    assert len(_consent_rows(runtime, member)) == 1

    # A new version of the text is a new record that ends the previous one.
    runtime.clock.advance(minutes=5)
    client = make_app(
        consent_version="2026-02", consent_text_dir=consent_texts(tmp_path, "2026-02")
    ).test_client()
    give_consent(client, tokens, "2026-02")
    first, second = _consent_rows(runtime, member)
    assert (first.version, second.version) == ("2026-01", "2026-02")
    assert first.withdrawn_at == second.granted_at and second.withdrawn_at is None
    state = client.get(CONSENT, headers=bearer(tokens)).get_json()["health_messaging"]
    assert state["version"] == "2026-02" and state["granted"] is True

    grants = audit_entries(runtime, prefix="consent.")
    assert [e.action for e in grants] == ["consent.grant", "consent.grant"]
    assert {e.subject_id for e in grants} == {member.id}
    assert {e.actor_id for e in grants} == {member.id}


INVALID_GRANTS = [
    ({"health_messaging": False, "version": "2026-01"}, "health_messaging"),
    ({"health_messaging": "yes", "version": "2026-01"}, "health_messaging"),
    ({"version": "2026-01"}, "health_messaging"),
    ({"health_messaging": True}, "version"),
    ({"health_messaging": True, "version": ""}, "version"),
    ({"health_messaging": True, "version": "v" * 33}, "version"),
    ({"health_messaging": True, "version": "has space"}, "version"),
    ({"health_messaging": True, "version": "2026-01", "extra": 1}, "extra"),
]


def test_invalid_grants_are_422_with_details_and_record_nothing(client, runtime, member, tokens):
    for body, field in INVALID_GRANTS:
        response = client.put(CONSENT, json=body, headers=bearer(tokens))
        assert response.status_code == 422, body
        error = response.get_json()["error"]
        assert error["code"] == "validation_error" and field in error["details"], body
    assert _consent_rows(runtime, member) == []
    assert (
        client.put(
            CONSENT,
            data="{not json",
            headers={**bearer(tokens), "Content-Type": "application/json"},
        ).status_code
        == 400
    )


def test_withdrawal_stops_new_questions_and_messages_but_history_stays_readable(
    client, runtime, member, tokens
):
    team = care_team(runtime)
    give_consent(client, tokens)
    conversation_id = asked(client, tokens, "Is this rash serious?", subject="Rash")
    messages = f"{CONVERSATIONS}/{conversation_id}/messages"

    withdrawn = client.delete(CONSENT, headers=bearer(tokens))
    assert withdrawn.status_code == 204
    assert client.get(CONSENT, headers=bearer(tokens)).get_json()["health_messaging"] == {
        "granted": False,
        "version": None,
        "granted_at": None,
        "current_version": CONSENT_VERSION,
        "outdated": False,
    }
    (row,) = _consent_rows(runtime, member)
    assert row.withdrawn_at is not None  # the record stays, ended
    (entry,) = audit_entries(runtime, prefix="consent.withdraw")
    assert entry.subject_id == member.id

    refused_question = ask(client, tokens, "Another question")
    refused_message = send(client, tokens, messages, "A follow-up")
    for refused in (refused_question, refused_message):
        assert refused.status_code == 403
        assert refused.get_json()["error"]["code"] == "consent_required"
    # A doctor cannot add to it either: the member's consent is what is missing.
    doctor = login(client, runtime, team.clinician)
    reply = send(client, doctor, f"/api/v1/clinician/conversations/{conversation_id}/messages", "x")
    assert reply.status_code == 403
    assert reply.get_json()["error"]["code"] == "consent_required"
    assert (count(runtime, Conversation), count(runtime, Message)) == (1, 1)

    # The history stays readable.
    listed = client.get(CONVERSATIONS, headers=bearer(tokens)).get_json()["items"]
    assert [c["subject"] for c in listed] == ["Rash"]
    one = client.get(f"{CONVERSATIONS}/{conversation_id}", headers=bearer(tokens))
    assert one.status_code == 200
    page = client.get(messages, headers=bearer(tokens)).get_json()
    assert [m["body"] for m in page["items"]] == ["Is this rash serious?"]

    # Granting again lets the member write again.
    give_consent(client, tokens, CONSENT_VERSION)
    assert send(client, tokens, messages, "A follow-up").status_code == 201
    assert len(_consent_rows(runtime, member)) == 2


def test_withdrawing_without_consent_is_a_quiet_204(client, runtime, member, tokens):
    assert client.delete(CONSENT, headers=bearer(tokens)).status_code == 204
    assert audit_entries(runtime, prefix="consent.") == []
    assert _consent_rows(runtime, member) == []


def test_the_server_serves_the_current_consent_text_to_anyone(client, make_app, tmp_path):
    response = client.get("/api/v1/consent")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["purpose"], body["version"]) == ("health_messaging", CONSENT_VERSION)
    assert "first name, birth date and sex" in body["text"]
    assert body["sha256"] == hashlib.sha256(body["text"].encode()).hexdigest()

    other = make_app(consent_version="2027-03", consent_text_dir=consent_texts(tmp_path, "2027-03"))
    served = other.test_client().get("/api/v1/consent").get_json()
    assert (served["version"], served["text"]) == ("2027-03", "Consent text, version 2027-03.\n")


def test_an_app_whose_current_consent_text_is_missing_refuses_to_start(make_app, tmp_path):
    with pytest.raises(ConfigurationError, match="consent text"):
        make_app(consent_version="2099-01", consent_text_dir=consent_texts(tmp_path))


def test_a_grant_to_a_version_the_server_does_not_serve_is_refused(client, runtime, member, tokens):
    response = client.put(
        CONSENT, json={"health_messaging": True, "version": "2025-12"}, headers=bearer(tokens)
    )
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "consent_version_not_current"
    assert error["details"] == {"current_version": CONSENT_VERSION}
    assert _consent_rows(runtime, member) == []


def test_a_member_whose_consent_names_an_older_text_is_asked_again_before_a_new_question(
    client, runtime, member, tokens, make_app, tmp_path
):
    care_team(runtime)
    give_consent(client, tokens)
    conversation_id = asked(client, tokens, "Is this rash serious?")
    # The insurer publishes a new text.
    client = make_app(
        consent_version="2026-07", consent_text_dir=consent_texts(tmp_path, "2026-07")
    ).test_client()
    state = client.get(CONSENT, headers=bearer(tokens)).get_json()["health_messaging"]
    assert (state["version"], state["current_version"], state["outdated"]) == (
        CONSENT_VERSION,
        "2026-07",
        True,
    )

    refused = ask(client, tokens, "Another question")
    assert refused.status_code == 403
    error = refused.get_json()["error"]
    assert error["code"] == "consent_outdated"
    assert error["details"] == {"current_version": "2026-07"}
    assert count(runtime, Conversation) == 1
    # A follow-up in the conversation already asked goes on under the grant it was asked under.
    messages = f"{CONVERSATIONS}/{conversation_id}/messages"
    assert send(client, tokens, messages, "A follow-up").status_code == 201

    give_consent(client, tokens, "2026-07")
    assert ask(client, tokens, "Another question").status_code == 201
    assert [(row.version, row.withdrawn_at is None) for row in _consent_rows(runtime, member)] == [
        (CONSENT_VERSION, False),
        ("2026-07", True),
    ]
