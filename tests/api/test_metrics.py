"""``GET /metrics`` (issue 13 item 11): Prometheus' format, from the staff networks only.

Scraped here through the app as Prometheus would, and parsed with prometheus_client's own
parser: request latency by route and status, sign-in failures and lockouts, the re-wrap
backlog, the audit chain head's age and the last retention run. Counters live in the
process-wide registry, so every test reads a difference, before and after. That gunicorn's
workers are added up is checked by serving (``tests/e2e/test_metrics_multiprocess.py``).
"""

from __future__ import annotations

import os
import re

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat.audit.addresses import AddressKeys, reveal
from medchat.models import AuditEntry
from tests.support.accounts import bearer, code_for, login, make_member, make_staff
from tests.support.mailbox import delivered, reset_token_in
from tests.support.messaging import asked, care_team, give_consent
from tests.support.metrics import scrape, value
from tests.support.retention import run as run_retention

OUTSIDE = "203.0.113.7"


def test_request_latency_is_counted_by_route_method_and_status(client, runtime):
    member = make_member(runtime)
    auth = bearer(login(client, runtime, member))
    before = scrape(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    # A path with an id counts under its rule; a path that matches nothing under "unmatched".
    missing = "/api/v1/conversations/7f3a4c8e-0000-4000-8000-000000000000/messages"
    assert client.get(missing, headers=auth).status_code == 404
    assert client.get("/no/such/page/7f3a4c8e").status_code == 404
    after = scrape(client)

    healthz = {"route": "/healthz", "method": "GET", "status": "200"}
    count = "medchat_http_request_duration_seconds_count"
    assert value(after, count, **healthz) - value(before, count, **healthz) == 3
    assert value(after, "medchat_http_request_duration_seconds_sum", **healthz) > value(
        before, "medchat_http_request_duration_seconds_sum", **healthz
    )
    rule = "/api/v1/conversations/<uuid:conversation_id>/messages"
    read = {"route": rule, "method": "GET", "status": "404"}
    assert value(after, count, **read) - value(before, count, **read) == 1
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    assert value(after, count, **unmatched) - value(before, count, **unmatched) == 1
    # No label holds a path or an id (the registry is the process's: other tests' apps add
    # rules of their own, so the labels are checked for what a path would bring).
    routes = {dict(labels).get("route") for (name, labels) in after if name == count}
    assert not {missing, "/no/such/page/7f3a4c8e"} & routes
    assert not [route for route in routes if re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", route)]
    assert value(after, "medchat_http_requests_in_flight") == 1  # the scrape itself


def test_sign_in_failures_and_lockouts_are_counted(client, runtime):
    member = make_member(runtime)
    staff = make_staff(runtime, Role.ADMIN)
    before = scrape(client)
    wrong = {"email": member.email, "password": "not-the-password-at-all"}
    statuses = [client.post("/api/v1/auth/token", json=wrong).status_code for _ in range(6)]
    # Five wrong passwords spend this address's budget for the account; the sixth is refused
    # before any work, so it is no failure of its own.
    assert statuses == [401] * 5 + [429]
    runtime.clock.advance(seconds=30)
    wrong_code = client.post(
        "/api/v1/auth/token",
        json={"email": staff.email, "password": staff.password, "totp_code": "000000"},
    )
    assert wrong_code.status_code == 401, wrong_code.get_json()
    assert code_for(staff, runtime) != "000000"
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("medchat_sign_in_failures_total", factor="password") == 5
    assert delta("medchat_sign_in_failures_total", factor="second_factor") == 1
    assert delta("medchat_sign_in_lockouts_total", budget="address") == 1
    assert delta("medchat_sign_in_lockouts_total", budget="account") == 0


def test_the_audit_chain_head_age_and_length(client, runtime):
    make_member(runtime)  # registering is audited
    runtime.clock.advance(seconds=300)
    samples = scrape(client)
    with runtime.database.transaction() as session:
        entries = len(session.scalars(select(AuditEntry.seq)).all())
    assert value(samples, "medchat_state_up") == 1
    assert value(samples, "medchat_audit_chain_head_age_seconds") == 300
    assert value(samples, "medchat_audit_chain_length") == entries > 0


def test_the_last_retention_run(client, runtime):
    assert ("medchat_retention_last_run_success", ()) not in scrape(client)
    run_retention(runtime)
    samples = scrape(client)
    assert value(samples, "medchat_retention_last_run_success") == 1
    assert (
        value(samples, "medchat_retention_last_run_timestamp_seconds")
        == runtime.clock.now().timestamp()
    )
    for result in ("conversations_destroyed", "conversations_sealed", "skipped_busy"):
        assert (("medchat_retention_last_run_items", (("result", result),))) in samples
        assert value(samples, "medchat_retention_last_run_items", result=result) == 0


def test_the_rewrap_backlog_grows_with_a_reset_and_drains_with_a_doctor(make_app, tmp_path):
    app = make_app(mail_url=f"file://{tmp_path}")
    runtime, client = app.extensions["medchat"], app.test_client()
    team = care_team(runtime)
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    for question in ("First question?", "Second question?"):
        asked(client, tokens, question)
    assert value(scrape(client), "medchat_rewrap_backlog") == 0

    assert client.post("/api/v1/auth/password-reset", json={"email": member.email}).status_code
    token = reset_token_in(delivered(runtime, tmp_path)[-1][0])
    confirmed = client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"reset_token": token, "new_password": "lichen-tundra-pelican-86"},
    )
    assert confirmed.status_code == 204, confirmed.get_json()
    runtime.clock.advance(seconds=90)
    waiting = scrape(client)
    assert value(waiting, "medchat_rewrap_backlog") == 2
    assert value(waiting, "medchat_rewrap_oldest_request_age_seconds") == 90

    doctor = bearer(login(client, runtime, team.clinician))
    assert client.get("/api/v1/clinician/queue", headers=doctor).status_code == 200
    assert value(scrape(client), "medchat_rewrap_backlog") == 0


@pytest.mark.parametrize("address", [OUTSIDE, "::ffff:203.0.113.7", "2001:db8::7"])
def test_a_scrape_from_outside_the_staff_networks_is_refused_and_audited(client, address):
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": address})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "network_not_allowed"
    assert b"medchat_" not in response.get_data()
    runtime = client.application.extensions["medchat"]
    with runtime.database.transaction() as session:
        denied = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "request.denied")
        ).all()
    keys = AddressKeys(seal=runtime.keys.profile, commit=runtime.keys.audit_mac)
    assert [reveal(keys, entry) for entry in denied] == [address]


def test_a_database_outage_leaves_the_request_metrics_scrapable(client, runtime):
    runtime.database.engine.dispose()
    engine_url = runtime.database.engine.url
    if engine_url.get_backend_name() != "sqlite":
        pytest.skip("the outage is simulated by removing SQLite's file")
    path = engine_url.database
    os.rename(path, path + ".away")
    try:
        response = client.get("/metrics")
    finally:
        os.rename(path + ".away", path)
        runtime.database.engine.dispose()  # the pool's connections opened the empty file
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    text = response.get_data(as_text=True)
    assert "medchat_state_up 0.0" in text
    assert "medchat_http_request_duration_seconds_count" in text
