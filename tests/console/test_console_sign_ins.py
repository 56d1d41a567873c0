"""The console's Sign-ins page (issue 17, item 6): a clinician lists their sign-ins, console
and app, ends one, and signs out everywhere else; never someone else's, never by accident
this one. Each test checks the ended session itself afterwards, not only the list."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat.models import AuthToken
from tests.support.accounts import bearer, login, make_staff
from tests.support.audit import audit_entries
from tests.support.console import console_login, csrf_from
from tests.support.messaging import care_team

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0"
)
_END = re.compile(r'action="/console/sign-ins/([0-9a-f-]{36})/end"')


def _browser(app, runtime, person, user_agent):
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    console_login(client, runtime, person)
    return client


def _page(client) -> str:
    answer = client.get("/console/sign-ins")
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    return answer.get_data(as_text=True)


def _signed_in(client) -> bool:
    return client.get("/console/sign-ins").status_code == 200


@pytest.fixture
def team(runtime):
    return care_team(runtime)


def test_page_lists_console_and_app_sign_ins_with_devices(app, runtime, team):
    office = _browser(app, runtime, team.clinician, FIREFOX)
    runtime.clock.advance(seconds=60)
    home = _browser(app, runtime, team.clinician, EDGE)
    login(app.test_client(), runtime, team.clinician)
    html = _page(office)
    assert "Firefox on Linux (console)" in html and "Edge on Windows (console)" in html
    assert html.count("this session") == 1
    assert len(_END.findall(html)) == 2  # the other console session and the app sign-in
    assert "Sign out everywhere else" in html
    assert _signed_in(home)


def test_ending_one_sign_in_stops_that_session_only_and_is_audited(app, runtime, team):
    office = _browser(app, runtime, team.clinician, FIREFOX)
    home = _browser(app, runtime, team.clinician, EDGE)
    html = _page(office)
    (other,) = _END.findall(html)
    answer = office.post(f"/console/sign-ins/{other}/end", data={"csrf_token": csrf_from(html)})
    assert answer.status_code == 302 and "notice=ended" in answer.headers["Location"]
    assert not _signed_in(home)
    assert _signed_in(office)
    ended = audit_entries(runtime, "auth.sign_in_end")
    assert [json.loads(entry.details)["family"] for entry in ended] == [other]


def test_sign_out_everywhere_else_keeps_this_session(app, runtime, team):
    office = _browser(app, runtime, team.clinician, FIREFOX)
    home = _browser(app, runtime, team.clinician, EDGE)
    app_tokens = login(app.test_client(), runtime, team.clinician)
    html = _page(office)
    answer = office.post("/console/sign-ins/end-others", data={"csrf_token": csrf_from(html)})
    assert answer.status_code == 302 and "notice=others" in answer.headers["Location"]
    assert not _signed_in(home)
    assert app.test_client().get("/api/v1/me", headers=bearer(app_tokens)).status_code == 401
    assert _signed_in(office)
    shown = office.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Every other sign-in has ended." in shown and shown.count("this session") == 1


def test_someone_elses_sign_in_is_not_found_and_this_one_is_not_ended_here(app, runtime, team):
    office = _browser(app, runtime, team.clinician, FIREFOX)
    other_clinician = make_staff(runtime, Role.CLINICIAN)
    colleague = _browser(app, runtime, other_clinician, EDGE)
    with runtime.database.transaction() as session:
        theirs = session.scalar(
            select(AuthToken.family_id).where(AuthToken.account_id == other_clinician.id)
        )
        mine = session.scalar(
            select(AuthToken.family_id).where(AuthToken.account_id == team.clinician.id)
        )
    token = csrf_from(_page(office))
    for family in (theirs, uuid.uuid4()):
        answer = office.post(f"/console/sign-ins/{family}/end", data={"csrf_token": token})
        assert answer.status_code == 404
    assert _signed_in(colleague)
    answer = office.post(f"/console/sign-ins/{mine}/end", data={"csrf_token": token})
    assert answer.status_code == 409
    assert _signed_in(office)


def test_ending_needs_the_csrf_token(app, runtime, team):
    office = _browser(app, runtime, team.clinician, FIREFOX)
    home = _browser(app, runtime, team.clinician, EDGE)
    (other,) = _END.findall(_page(office))
    assert office.post(f"/console/sign-ins/{other}/end").status_code == 403
    assert office.post("/console/sign-ins/end-others").status_code == 403
    assert _signed_in(home)
