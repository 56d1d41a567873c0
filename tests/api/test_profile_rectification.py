"""A member corrects their details (``PATCH /api/v1/me``; docs/data-rights.md
"Rectification"): registration's rules, sealed as registration seals, seen at once by the
clinician's patient view, audited by field name only."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from medchat import audit
from medchat.models import Account, MemberProfile
from tests.support.accounts import bearer, login, make_member
from tests.support.audit import audit_entries
from tests.support.dump import database_dump
from tests.support.leaks import found_in
from tests.support.messaging import asked, care_team, give_consent
from tests.support.rights import CLINICIAN, ME

UPDATE = "profile.update"

CORRECTIONS = {
    "first_name": "Quentinecanary",
    "last_name": "Lastnamecanaryrx",
    "birth_date": "1979-02-03",
    "sex": "male",
    "phone": "+33 7 11 22 33 44",
    "insurance_number": "INS-RX-CANARY-9041",
}


@pytest.fixture
def member(runtime):
    return make_member(runtime)


@pytest.fixture
def auth(client, runtime, member):
    return bearer(login(client, runtime, member))


def me(client, auth):
    response = client.get(ME, headers=auth)
    assert response.status_code == 200
    return response.get_json()


def patch(client, auth, body):
    return client.patch(ME, json=body, headers=auth)


def test_every_field_can_be_corrected_and_the_profile_comes_back(client, runtime, member, auth):
    before = me(client, auth)
    response = patch(client, auth, CORRECTIONS)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    after = response.get_json()
    assert {k: after[k] for k in CORRECTIONS} == CORRECTIONS
    # What was not named stays as it was.
    for key in ("id", "email", "role", "mfa_enabled", "created_at"):
        assert after[key] == before[key]
    assert me(client, auth) == after


def test_one_field_changes_and_the_others_stay(client, auth):
    before = me(client, auth)
    after = patch(client, auth, {"phone": "+33 1 23 45 67 89"}).get_json()
    assert after == {**before, "phone": "+33 1 23 45 67 89"}


def test_the_change_is_audited_by_field_names_only(client, runtime, member, auth):
    patch(client, auth, {"last_name": "Newname", "phone": "+33 1 99 99 99 99", "sex": "female"})
    (entry,) = audit_entries(runtime, UPDATE)
    # "sex" was already "female": not a change, so not named.
    assert json.loads(entry.details) == {"fields": ["last_name", "phone"]}
    assert entry.subject_id == member.id and entry.actor_id == member.id
    assert entry.target_id == str(member.id)
    assert "Newname" not in entry.details and "99 99" not in entry.details
    with runtime.database.transaction() as session:
        assert audit.verify(session, runtime.keys.audit_mac).ok


def test_a_correction_to_the_same_values_writes_and_audits_nothing(client, runtime, auth):
    current = me(client, auth)
    same = {"first_name": current["first_name"], "birth_date": current["birth_date"]}
    response = patch(client, auth, same)
    assert response.status_code == 200 and response.get_json() == current
    assert audit_entries(runtime, UPDATE) == []


INVALID = [
    ({}, "_schema"),
    ({"email": "new@example.org"}, "email"),
    ({"password": "another-long-password-77"}, "password"),
    ({"role": "clinician"}, "role"),
    ({"first_name": ""}, "first_name"),
    ({"first_name": "x" * 101}, "first_name"),
    ({"first_name": None}, "first_name"),
    ({"last_name": 42}, "last_name"),
    ({"birth_date": "12/04/1988"}, "birth_date"),
    # A week ahead, not tomorrow: the list is made at collection, and a run that crosses
    # midnight made "tomorrow" today (CI at 00:05 UTC accepted it).
    ({"birth_date": (date.today() + timedelta(days=7)).isoformat()}, "birth_date"),
    ({"birth_date": "1899-12-31"}, "birth_date"),
    ({"sex": "f"}, "sex"),
    ({"sex": "FEMALE"}, "sex"),
    ({"phone": "call me"}, "phone"),
    ({"insurance_number": ""}, "insurance_number"),
    ({"insurance_number": "9" * 41}, "insurance_number"),
    ({"first_name": "Valid", "sex": "nope"}, "sex"),
]


def test_invalid_corrections_are_422_with_details_and_change_nothing(client, runtime, auth):
    before = me(client, auth)
    for body, field in INVALID:
        response = patch(client, auth, body)
        assert response.status_code == 422, body
        error = response.get_json()["error"]
        assert error["code"] == "validation_error" and field in error["details"], (body, error)
    assert me(client, auth) == before
    assert audit_entries(runtime, UPDATE) == []


def test_a_body_that_is_not_json_is_400_and_changes_nothing(client, auth):
    before = me(client, auth)
    response = client.patch(
        ME, data="{not json", headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"
    assert me(client, auth) == before


def test_the_same_rules_as_registration(client):
    """Registration refuses exactly what rectification refuses (one set of rules)."""
    from tests.support.accounts import REGISTRATION

    for body, field in INVALID:
        if field in ("_schema", "email", "password", "role"):
            continue
        response = client.post("/api/v1/auth/register", json={**REGISTRATION, **body})
        assert response.status_code == 422, body
        assert field in response.get_json()["error"]["details"], body


def test_the_clinician_sees_the_new_first_name_birth_date_and_sex(client, runtime, member, auth):
    team = care_team(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    conversation_id = asked(client, tokens, "A question before the correction.")
    doctor = bearer(login(client, runtime, team.clinician))

    assert patch(client, auth, CORRECTIONS).status_code == 200

    expected = {"first_name": "Quentinecanary", "birth_date": "1979-02-03", "sex": "male"}
    (queued,) = client.get(f"{CLINICIAN}/queue", headers=doctor).get_json()["items"]
    case = client.get(f"{CLINICIAN}/conversations/{conversation_id}", headers=doctor).get_json()
    for patient in (queued["patient"], case["patient"]):
        assert {k: patient[k] for k in expected} == expected
        assert set(patient) == {"pseudonym", "first_name", "birth_date", "sex"}
    # Still nothing more: the corrected last name, phone and insurance number stay hidden.
    text = client.get(f"{CLINICIAN}/queue", headers=doctor).get_data(as_text=True)
    for hidden in ("last_name", "phone", "insurance_number"):
        assert CORRECTIONS[hidden] not in text


def test_no_corrected_value_is_stored_in_clear(client, runtime, member, auth):
    assert patch(client, auth, CORRECTIONS).status_code == 200
    sealed = {k: CORRECTIONS[k] for k in ("last_name", "phone", "insurance_number")}
    assert found_in(database_dump(runtime.database.engine), sealed) == []
    # Sealed the way registration seals: under the profile key, bound to account and field.
    with runtime.database.transaction() as session:
        account = session.get(Account, member.id)
        profile = session.get(MemberProfile, member.id)
        opened = {
            "last_name": runtime.profiles.open(
                account.id, "last_name", account.last_name_ciphertext
            ),
            "phone": runtime.profiles.open(account.id, "phone", profile.phone_ciphertext),
            "insurance_number": runtime.profiles.open(
                account.id, "insurance_number", profile.insurance_number_ciphertext
            ),
        }
    assert opened == sealed


def test_only_members_may_correct_a_profile(client, runtime):
    from access_control.roles import Role
    from tests.support.accounts import make_staff

    for role in (Role.CLINICIAN, Role.COMPLIANCE, Role.ADMIN):
        person = make_staff(runtime, role)
        response = patch(client, bearer(login(client, runtime, person)), {"first_name": "X"})
        assert response.status_code == 403, role
        assert response.get_json()["error"]["code"] == "forbidden"
    assert client.patch(ME, json={"first_name": "X"}).status_code == 401
