"""One JSON line per request, and a request id from the client to the log (issue 13 item 10).

Each request writes one line (logger ``medchat.requests``) with time, level, request id,
method, route (the URL rule), status, duration and the actor's role; a sane ``X-Request-ID``
is kept and returned, any other replaced; and the lines the service writes while a request
runs carry its id. What the lines must never hold is
``tests/security/test_logs_hold_no_personal_data.py``'s.
"""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from medchat.observability.logs import configure_logging
from tests.support.accounts import bearer, login, make_member
from tests.support.console import console_login
from tests.support.log_capture import captured_lines
from tests.support.messaging import asked, care_team, give_consent

REQUEST_FIELDS = {
    "time",
    "level",
    "logger",
    "event",
    "request_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "actor_role",
}
GENERATED = re.compile(r"^[0-9a-f]{32}$")


def test_each_request_writes_one_line_with_route_status_duration_and_role(client, runtime):
    team = care_team(runtime)
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    conversation = asked(client, tokens)
    doctor = bearer(login(client, runtime, team.clinician))

    with captured_lines(logging.INFO) as lines:
        read = client.get(f"/api/v1/clinician/conversations/{conversation}", headers=doctor)
        anonymous = client.get("/api/v1/me")
    assert (read.status_code, anonymous.status_code) == (200, 401)

    first, second = lines.requests()
    assert set(first) == REQUEST_FIELDS
    assert list(first)[:5] == ["time", "level", "logger", "event", "request_id"]
    assert first["event"] == "request"
    assert first["route"] == "/api/v1/clinician/conversations/<uuid:conversation_id>"
    assert (first["method"], first["status"], first["actor_role"]) == ("GET", 200, "clinician")
    assert first["level"] == "info"
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] > 0
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$", first["time"])
    assert first["request_id"] == read.headers["X-Request-ID"]
    assert conversation not in json.dumps(first)  # the rule, never the path
    assert (second["route"], second["status"], second["actor_role"]) == (
        "/api/v1/me",
        401,
        "anonymous",
    )
    assert second["request_id"] != first["request_id"]


def test_a_console_page_names_the_clinician_after_its_commit(client, runtime):
    """The role is noted when the session loads the caller: read after the commit, the
    account row would need a session that is gone."""
    team = care_team(runtime)
    console_login(client, runtime, team.clinician)
    with captured_lines(logging.INFO) as lines:
        assert client.get("/console/queue").status_code == 200
        assert client.get("/console/login").status_code in (200, 302)
    queue, login_page = lines.requests()
    assert (queue["route"], queue["actor_role"]) == ("/console/queue", "clinician")
    assert login_page["route"] == "/console/login"


def test_a_sane_request_id_is_kept_and_returned(client):
    given = "nginx-7f3a.c0ffee_42"
    with captured_lines(logging.INFO) as lines:
        response = client.get("/healthz", headers={"X-Request-ID": given})
    assert response.headers["X-Request-ID"] == given
    assert [line["request_id"] for line in lines.requests()] == [given]


@pytest.mark.parametrize(
    "given",
    [
        "someone@example.org",
        "two words",
        "x" * 65,
        "line\\nbreak",
        '{"forged": "json"}',
        "",
        "é-accent",
    ],
)
def test_any_other_request_id_is_replaced_by_a_random_one(client, given):
    with captured_lines(logging.INFO) as lines:
        response = client.get("/healthz", headers={"X-Request-ID": given})
    returned = response.headers["X-Request-ID"]
    assert returned != given and GENERATED.match(returned)
    assert [line["request_id"] for line in lines.requests()] == [returned]
    assert given not in lines.text or given == ""


def test_without_a_request_id_one_is_made_for_each_request(client):
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]
    assert GENERATED.match(first) and GENERATED.match(second) and first != second


def test_lines_written_while_a_request_runs_carry_its_id(client, key_dir):
    """A service warning (here the readiness check's) names the request it was written in."""
    next(key_dir.glob("*.key")).unlink()
    with captured_lines(logging.INFO) as lines:
        response = client.get("/readyz", headers={"X-Request-ID": "probe-1"})
        # Outside any request, no id is carried over from the last one.
        logging.getLogger("medchat.health").warning("after the request")
    assert response.status_code == 503
    *during, after = [r for r in lines.records() if r["logger"] == "medchat.health"]
    assert during and all(r["request_id"] == "probe-1" for r in during)
    assert during[0]["level"] == "warning"
    assert "key_files unavailable" in during[0]["event"]
    assert after["event"] == "after the request" and "request_id" not in after


def test_configure_logging_writes_json_and_replaces_its_own_handler():
    first, second = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        configure_logging(first)
        handler = configure_logging(second)
        assert [h for h in root.handlers if h not in before] == [handler]
        logging.getLogger("medchat.example").info("ready")
        logging.getLogger("some.library").info("chatter below warning")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("medchat.example").exception("failed")
    finally:
        for added in [h for h in root.handlers if h not in before]:
            root.removeHandler(added)
    assert first.getvalue() == ""
    ready, failed = (json.loads(line) for line in second.getvalue().splitlines())
    assert {k: ready[k] for k in ("event", "level", "logger")} == {
        "event": "ready",
        "level": "info",
        "logger": "medchat.example",
    }
    assert failed["level"] == "error" and "ValueError: boom" in failed["exception"]
