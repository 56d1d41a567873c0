"""Claims in the console (issue 17, item 3): claim, see who has a question, hand it over with a
reason from the list, release; the queue filtered all / unclaimed / claimed / mine."""

from __future__ import annotations

import pytest

from access_control.roles import Role
from medchat.models import KeyRole
from medchat.services.role_keys import RoleKeyService
from tests.support.accounts import login, make_member, make_staff
from tests.support.console import console_login, csrf_from
from tests.support.messaging import asked, care_team, give_consent
from tests.support.sessions import sign_in


@pytest.fixture
def ward(app, runtime):
    team = care_team(runtime)
    colleague = make_staff(runtime, Role.CLINICIAN, first_name="Bruno", last_name="Bernard")
    holder = sign_in(runtime, team.clinician).principal
    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).grant(holder, KeyRole.PHYSICIAN, colleague.id)
    api = app.test_client()
    tokens = login(api, runtime, make_member(runtime, first_name="Camille"))
    give_consent(api, tokens)
    question = asked(api, tokens, "My knee hurts when I climb stairs.", subject="Knee pain")
    mine, theirs = app.test_client(), app.test_client()
    console_login(mine, runtime, team.clinician)
    console_login(theirs, runtime, colleague)
    return {"question": question, "mine": mine, "theirs": theirs, "colleague": colleague}


def _html(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_data(as_text=True)


def test_claim_hand_over_and_release_in_the_console(ward):
    page = f"/console/conversations/{ward['question']}"
    mine, theirs = ward["mine"], ward["theirs"]
    html = _html(mine, page)
    assert "Nobody has this question yet" in html
    assert mine.post(f"{page}/claim", data={"csrf_token": csrf_from(html)}).status_code == 302
    assert "You have this question." in _html(mine, f"{page}?notice=claimed")

    # The colleague sees it taken, by whom; their answer is refused with the reason.
    queue = _html(theirs, "/console/queue")
    assert "Taken</span> by Dr. M." in queue
    html = _html(theirs, page)
    assert "Taken</span> by Dr. M." in html and "Only they can answer" in html
    refused = theirs.post(f"{page}/reply", data={"csrf_token": csrf_from(html), "body": "Hi"})
    assert refused.status_code == 409
    assert "A colleague has claimed this question." in refused.get_data(as_text=True)
    assert "Knee pain" not in _html(theirs, "/console/queue?claim=mine")
    assert "Knee pain" in _html(theirs, "/console/queue?claim=claimed")
    assert "Knee pain" not in _html(theirs, "/console/queue?claim=unclaimed")

    # Hand-over: a colleague from the list and a reason from the list, no free text.
    html = _html(mine, page)
    assert "Bruno (Dr. B.)" in html and "<textarea" in html  # the answer box only
    handed = mine.post(
        f"{page}/handoff",
        data={
            "csrf_token": csrf_from(html),
            "to": str(ward["colleague"].id),
            "reason": "shift_end",
        },
    )
    assert handed.status_code == 302, handed.get_data(as_text=True)[:300]
    html = _html(theirs, page)
    assert "Yours</span> until" in html
    assert "handed over by Dr. M. (End of my shift)" in html
    assert "Knee pain" in _html(theirs, "/console/queue?claim=mine")

    released = theirs.post(f"{page}/release", data={"csrf_token": csrf_from(html)})
    assert released.status_code == 302
    assert "Nobody has this question yet" in _html(mine, page)
    assert "Knee pain" in _html(mine, "/console/queue?claim=unclaimed")


def test_console_claim_forms_need_csrf_and_known_filters(ward):
    page = f"/console/conversations/{ward['question']}"
    mine = ward["mine"]
    assert mine.post(f"{page}/claim", data={}).status_code == 403
    assert mine.post(f"{page}/release", data={}).status_code == 403
    handed = mine.post(f"{page}/handoff", data={"to": str(ward["colleague"].id)})
    assert handed.status_code == 403
    assert "Nobody has this question yet" in _html(mine, page)
    assert mine.get("/console/queue?claim=theirs").status_code == 404
    html = _html(mine, page)
    bad = mine.post(
        f"{page}/handoff",
        data={"csrf_token": csrf_from(html), "to": str(ward["colleague"].id), "reason": "gossip"},
    )
    assert bad.status_code == 400
