"""``deploy/gunicorn.conf.py`` served for real: what it promises about logs and long requests.

Two promises of the production server configuration are checked by running gunicorn with it
(on a tiny WSGI app, so no database is needed): gunicorn writes JSON lines and no access log
(the application's request line names the route, never the path or its query string, where
tokens or addresses could sit: ``tests/api/test_request_log.py``), and a gthread worker does not
cut short a request that runs longer than gunicorn's ``timeout`` (the long archive verification
relies on that; the proxy decides how long a route may take). And what a worker inherits: the
third-party libraries loaded once by the master, never the application (a reload must run
the code on disk); and what it may not do: dump core with the opened keys it holds.
"""

from __future__ import annotations

import http.client
import json
import sys
import time

import pytest

from tests.support.gunicorn_probe import WORKER_TIMEOUT

SLOW_SECONDS = 2 * WORKER_TIMEOUT


def _get(port: int, path: str, timeout: float = 30) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_gunicorn_writes_json_lines_and_neither_the_path_nor_the_query_string(served):
    port, log = served
    status, _ = _get(port, "/api/v1/probe?reset_token=canary-token-7Q&email=canary%40example.org")
    assert status == 200
    time.sleep(0.5)  # an access log line would be written after the response
    text = log.read_text()
    assert "/api/v1/probe" not in text
    assert "canary" not in text
    assert "reset_token" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert any("Booting worker" in line["event"] for line in lines)
    assert all({"time", "level", "logger", "event"} <= set(line) for line in lines)


def test_a_request_longer_than_the_worker_timeout_is_not_cut_short(served):
    port, log = served
    began = time.monotonic()
    status, body = _get(port, f"/slow?seconds={SLOW_SECONDS}")
    assert status == 200, log.read_text()
    assert body == b"done"
    assert time.monotonic() - began >= SLOW_SECONDS
    assert "WORKER TIMEOUT" not in log.read_text()


def test_a_worker_inherits_the_libraries_but_loads_the_application_itself(served):
    port, log = served
    # The probe app imports none of these: loaded in the worker means loaded by the master.
    modules = ("zxcvbn", "sqlalchemy.orm", "medchat", "access_control")
    status, body = _get(port, "/process?" + "&".join(f"module={name}" for name in modules))
    assert status == 200, log.read_text()
    process = json.loads(body)
    assert process["loaded"] == {
        "zxcvbn": True,
        "sqlalchemy.orm": True,
        "medchat": False,
        "access_control": False,
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_a_worker_can_dump_no_core(served):
    """Issue 18 item 8: a worker holds opened keys; no core dump may write them to disk."""
    port, log = served
    status, body = _get(port, "/process")
    assert status == 200, log.read_text()
    process = json.loads(body)
    assert process["dumpable"] == 0
    assert process["core_limit"] == [0, 0]
