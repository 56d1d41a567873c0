"""A worker whose keys do not load answers 503 and retries, then serves (issue 13 item 6).

``medchat.web.standby.WaitForKeys`` is the WSGI app of every gunicorn worker (``wsgi.py``);
served for real with a recycled worker in ``tests/e2e/test_worker_keys.py``.
"""

from __future__ import annotations

import json

from flask import Flask
from werkzeug.test import Client

from medchat.errors import ConfigurationError
from medchat.web.standby import WaitForKeys


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _healthy() -> Flask:
    app = Flask("healthy")
    app.add_url_rule("/healthz", "healthz", lambda: {"status": "ok"})
    return app


def test_unloadable_keys_answer_503_key_files_and_retry_at_most_every_few_seconds():
    attempts = []
    readable = [False]

    def factory() -> Flask:
        attempts.append(1)
        if not readable[0]:
            raise ConfigurationError("cannot read key file /k/profile.key (Is a directory)")
        return _healthy()

    clock = Clock()
    app = WaitForKeys(factory, retry_seconds=5, monotonic=clock)
    client = Client(app)
    assert app.app is None and len(attempts) == 1

    for path in ("/healthz", "/api/v1/me", "/console/login"):
        answer = client.get(path)
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "5"
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        error = json.loads(answer.data)["error"]
        assert error["code"] == "dependency_down"
        assert error["details"] == {"dependency": "key_files"}
    posted = client.post("/api/v1/conversations", data=b"not json")
    assert posted.status_code == 503
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert json.loads(ready.data)["error"]["details"] == {"failed": ["key_files"]}
    assert len(attempts) == 1  # no retry before retry_seconds

    readable[0] = True
    clock.now += 4.9
    assert client.get("/healthz").status_code == 503
    assert len(attempts) == 1
    clock.now += 0.2
    healed = client.get("/healthz")
    assert (healed.status_code, json.loads(healed.data)) == (200, {"status": "ok"})
    assert len(attempts) == 2 and app.app is not None
    client.get("/healthz")
    assert len(attempts) == 2


def test_loadable_keys_serve_at_once_without_a_standby_answer():
    app = WaitForKeys(_healthy, monotonic=Clock())
    assert Client(app).get("/healthz").status_code == 200
