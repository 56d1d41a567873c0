"""``deploy/gunicorn.conf.py`` served for real on the probe app (``serve_probe``).

gunicorn runs with the deployment's configuration file, only its worker timeout lowered, on
``tests.support.wsgi_probe:app`` (no database), one worker of two threads, in a process group
of its own that the fixture ends. The tests of what that configuration promises
(``tests/e2e/test_gunicorn_config.py``: logs, long requests, what a worker inherits;
``tests/e2e/test_gunicorn_connections.py``: kept-alive connections;
``tests/e2e/test_gunicorn_refusals.py``: what gunicorn answers itself) all take it as the
``served`` fixture of ``tests/e2e/conftest.py``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.hosts import free_port

ROOT = Path(__file__).resolve().parents[2]
# A gthread worker checks in with the master about once a second (its poll waits 1 s), so a
# 1 s timeout left no room for a busy machine: the master aborted an idle, healthy worker in CI.
# 3 s leaves two missed check-ins of slack, and the slow request still lasts twice the timeout.
WORKER_TIMEOUT = 3


def _wait_until_up(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail("gunicorn did not start listening in 30 s")


@contextmanager
def serve_probe(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """gunicorn with the deployment configuration, its worker timeout lowered to 3 s: its port
    and its log file, until the block ends (then the process group is stopped)."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    # The deployment file as it is, then only the worker timeout lowered (gunicorn gives a
    # config file's settings precedence, so the override is made in a file too).
    config = tmp_path / "gunicorn.conf.py"
    deployed = ROOT / "deploy" / "gunicorn.conf.py"
    config.write_text(f"exec(open({str(deployed)!r}).read())\ntimeout = {WORKER_TIMEOUT}\n")
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("MEDCHAT_")},
        # What the master's key check (``medchat keys check``) reads: this test's own.
        "MEDCHAT_KEY_DIR": str(tmp_path / "keys"),
        "MEDCHAT_DATABASE_URL": f"sqlite:///{tmp_path / 'medchat.sqlite3'}",
        "MEDCHAT_BIND": f"127.0.0.1:{port}",
        "MEDCHAT_WORKERS": "1",
        "MEDCHAT_THREADS": "2",
        "PYTHONPATH": str(ROOT),
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(config),
                "tests.support.wsgi_probe:app",
            ],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_until_up(port, process)
            yield port, log
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=40)
