"""The console shows a colleague's key fingerprint before the clinician confirms a grant
(issue 12, item 7), with a CSRF-protected form that grants to that key only."""

from __future__ import annotations

from sqlalchemy import select

from access_control import hybrid_kem
from access_control.roles import Role
from medchat.models import RoleKeyGrant
from tests.support.accounts import make_staff
from tests.support.console import console_login, csrf_from
from tests.support.messaging import care_team


def fingerprint_of(runtime, account_id) -> str:
    with runtime.database.transaction() as session:
        key = runtime.custody(session).verified_personal_key(account_id)
        return hybrid_kem.format_fingerprint(hybrid_kem.public_key_fingerprint(key.public_key))


def grants_of(runtime, account_id) -> int:
    with runtime.database.transaction() as session:
        return len(
            session.scalars(select(RoleKeyGrant).where(RoleKeyGrant.account_id == account_id)).all()
        )


def test_the_console_shows_the_fingerprint_before_confirming(client, runtime):
    team = care_team(runtime)
    newcomer = make_staff(runtime, Role.CLINICIAN, first_name="Noor", last_name="Okafor")
    console_login(client, runtime, team.clinician)
    fingerprint = fingerprint_of(runtime, newcomer.id)

    listed = client.get("/console/colleagues").get_data(as_text=True)
    shown = client.get(f"/console/colleagues/{newcomer.id}/grant")
    page = shown.get_data(as_text=True)

    assert "Dr. O." in listed and f"/console/colleagues/{newcomer.id}/grant" in listed
    assert shown.status_code == 200 and fingerprint in page
    assert grants_of(runtime, newcomer.id) == 0  # showing grants nothing
    token = csrf_from(page)
    forged = client.post(
        f"/console/colleagues/{newcomer.id}/grant", data={"fingerprint": fingerprint}
    )
    assert forged.status_code == 403 and grants_of(runtime, newcomer.id) == 0
    swapped = client.post(
        f"/console/colleagues/{newcomer.id}/grant",
        data={"csrf_token": token, "fingerprint": fingerprint_of(runtime, team.clinician.id)},
    )
    assert swapped.status_code == 409 and grants_of(runtime, newcomer.id) == 0

    confirmed = client.post(
        f"/console/colleagues/{newcomer.id}/grant",
        data={"csrf_token": token, "fingerprint": fingerprint},
    )

    assert confirmed.status_code == 200
    assert fingerprint in confirmed.get_data(as_text=True)
    assert grants_of(runtime, newcomer.id) == 1
