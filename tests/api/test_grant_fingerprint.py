"""A grant shows the newcomer's key fingerprint (issue 12, item 7; SECURITY-MODEL key hierarchy
10): readable before, answered after, and a grant to a key other than the one compared is
refused with nothing sealed. The console shows it before the clinician confirms
(``tests/console/test_console_grants.py``)."""

from __future__ import annotations

from sqlalchemy import select

from access_control import hybrid_kem
from access_control.roles import Role
from medchat.models import RoleKeyGrant
from tests.support.accounts import bearer, login, make_staff
from tests.support.messaging import care_team

CLINICIAN = "/api/v1/clinician/colleagues"


def fingerprint_of(runtime, account_id) -> str:
    with runtime.database.transaction() as session:
        key = runtime.custody(session).verified_personal_key(account_id)
        return hybrid_kem.format_fingerprint(hybrid_kem.public_key_fingerprint(key.public_key))


def granted_to(runtime, account_id) -> list[RoleKeyGrant]:
    with runtime.database.transaction() as session:
        return list(
            session.scalars(select(RoleKeyGrant).where(RoleKeyGrant.account_id == account_id))
        )


def test_a_grant_answers_the_newcomers_key_fingerprint(client, runtime):
    team = care_team(runtime)
    newcomer = make_staff(runtime, Role.CLINICIAN)
    doctor = bearer(login(client, runtime, team.clinician))

    granted = client.post(f"{CLINICIAN}/{newcomer.id}/grant", headers=doctor)

    assert granted.status_code == 200, granted.get_data()
    assert granted.get_json() == {
        "account_id": str(newcomer.id),
        "role": "physician",
        "fingerprint": fingerprint_of(runtime, newcomer.id),
        "role_key_versions": [1],
    }


def test_the_fingerprint_is_shown_before_and_another_key_is_refused(client, runtime):
    team = care_team(runtime)
    newcomer = make_staff(runtime, Role.CLINICIAN)
    officer = bearer(login(client, runtime, team.compliance))
    doctor = bearer(login(client, runtime, team.clinician))

    shown = client.get(f"{CLINICIAN}/{newcomer.id}/key", headers=doctor)
    expected = shown.get_json()["fingerprint"]
    other = fingerprint_of(runtime, team.clinician.id)
    refused = client.post(
        f"{CLINICIAN}/{newcomer.id}/grant", json={"fingerprint": other}, headers=doctor
    )
    assert refused.status_code == 409 and granted_to(runtime, newcomer.id) == []
    compared = client.post(
        f"{CLINICIAN}/{newcomer.id}/grant",
        json={"fingerprint": expected.replace(" ", "").upper()},
        headers=doctor,
    )

    assert shown.status_code == 200 and expected == fingerprint_of(runtime, newcomer.id)
    assert compared.status_code == 200 and compared.get_json()["fingerprint"] == expected
    assert len(granted_to(runtime, newcomer.id)) == 1
    # Only holders of the role key look keys up.
    assert client.get(f"{CLINICIAN}/{newcomer.id}/key", headers=officer).status_code == 403


def test_the_openapi_document_describes_the_grant_answer(client):
    document = client.get("/api/v1/openapi.json").get_json()
    grant = document["paths"]["/api/v1/clinician/colleagues/{account_id}/grant"]
    schemas = document["components"]["schemas"]

    assert "200" in grant["post"]["responses"] and "204" not in grant["post"]["responses"]
    assert set(schemas["Granted"]["required"]) >= {"account_id", "fingerprint", "role"}
    assert "requestBody" in grant["delete"]
    assert "/api/v1/compliance/colleagues/{account_id}/key" in document["paths"]
