"""Keys that cannot be read never take gunicorn's master down (issue 13 item 6).

Real gunicorn with ``deploy/gunicorn.conf.py`` (``max_requests`` lowered to 3 and one worker,
so a few requests recycle it, as routine recycling does), serving ``wsgi:app``:

- a server key file made unreadable while the server runs, then the worker recycled: the new
  worker answers 503 ``dependency_down`` (``key_files``) with ``Retry-After``, ``/readyz``
  is not ready, and the master is still the same live process; the file restored, the worker
  serves 200 again by itself (it retries every few seconds);
- a start with an unreadable key file exits non-zero at once, before listening, with one line
  naming the file (the master checks the keys before it forks: ``medchat keys check``).

"Unreadable": ``chmod 000`` where the tests run as an ordinary user; root reads any mode, so
there (CI containers run as root) the file is replaced by a directory of the same name, which
every user fails to read as a file (``IsADirectoryError``): the same path through
``access_control.key_directory.unreadable``. SQLite in development mode, so this runs anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from access_control.key_directory import load_server_keys
from tests.support.databases import fresh_database
from tests.support.hosts import GUNICORN_CONF, ROOT, Host, free_port, host_environment

MAX_REQUESTS = 3
KEY = "session-signing.key"


@dataclass
class Served:
    host: Host
    keys: Path
    settings: dict[str, str]


def _settings(workdir: Path, url: str) -> dict[str, str]:
    return {
        "MEDCHAT_ENV": "development",
        "MEDCHAT_DATABASE_URL": url,
        "MEDCHAT_KEY_DIR": str(workdir / "keys"),
        "MEDCHAT_MAIL_URL": f"file://{workdir / 'mail'}",
        "MEDCHAT_BCRYPT_ROUNDS": "4",
        "MEDCHAT_SCRYPT_LOG2_N": "10",
    }


def _start(name: str, settings: dict[str, str], workdir: Path) -> Host:
    """The deployment's gunicorn config with one worker recycled every ``MAX_REQUESTS``."""
    config = workdir / f"{name}.conf.py"
    config.write_text(
        f"exec(open({str(GUNICORN_CONF)!r}).read())\n"
        f"max_requests = {MAX_REQUESTS}\nmax_requests_jitter = 0\n"
    )
    port = free_port()
    log = workdir / f"{name}.log"
    env = host_environment(
        {**settings, "MEDCHAT_BIND": f"127.0.0.1:{port}", "MEDCHAT_WORKERS": "1"}
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(config), "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Host(name, port, process, log)


def make_unreadable(path: Path) -> bytes:
    """Make ``path`` unreadable for this process, whoever it runs as; returns its content."""
    content = path.read_bytes()
    path.chmod(0)
    if os.access(path, os.R_OK):  # root: modes do not stop it
        path.unlink()
        path.mkdir()
    return content


def restore(path: Path, content: bytes) -> None:
    if path.is_dir():
        path.rmdir()
        path.write_bytes(content)
    path.chmod(0o600)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with fresh_database("sqlite", tmp_path) as url:
        settings = _settings(tmp_path, url)
        load_server_keys(tmp_path / "keys", create_missing=True)
        host = _start("recycled", settings, tmp_path)
        try:
            host.wait_ready()
            yield Served(host, tmp_path / "keys", settings)
        finally:
            host.stop()


def _until(host: Host, status: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert host.process.poll() is None, f"the master exited:\n{host.tail()}"
        if host.call("GET", "/healthz").status == status:
            return
        time.sleep(0.2)
    pytest.fail(f"/healthz never answered {status} in {seconds:.0f} s:\n{host.tail()}")


def test_a_recycled_worker_without_its_keys_answers_503_then_heals(served):
    host = served.host
    master = host.process.pid
    path = served.keys / KEY
    content = make_unreadable(path)

    # The running worker still holds its keys; within MAX_REQUESTS requests it is recycled,
    # and its successor cannot load them.
    _until(host, 503, 30)
    answer = host.call("GET", "/api/v1/me")
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"
    assert answer.body["error"]["code"] == "dependency_down"
    assert answer.body["error"]["details"] == {"dependency": "key_files"}
    ready = host.call("GET", "/readyz")
    assert ready.status == 503
    assert ready.body["error"]["details"] == {"failed": ["key_files"]}
    assert host.process.poll() is None and host.process.pid == master
    log = host.log.read_text()
    assert f"cannot read key file {path}" in log
    assert "Worker failed to boot" not in log

    restore(path, content)
    _until(host, 200, 30)  # the next attempt (at most 5 s later) builds the app
    assert host.call("GET", "/readyz").status == 200
    assert host.process.poll() is None and host.process.pid == master


def test_a_start_with_an_unreadable_key_file_exits_at_once_naming_it(tmp_path):
    with fresh_database("sqlite", tmp_path) as url:
        settings = _settings(tmp_path, url)
        load_server_keys(tmp_path / "keys", create_missing=True)
        path = tmp_path / "keys" / KEY
        make_unreadable(path)
        host = _start("refused", settings, tmp_path)
        try:
            status = host.process.wait(timeout=60)
        finally:
            host.stop()
    output = host.log.read_text()
    assert status != 0, output
    named = [line for line in output.splitlines() if "cannot read key file" in line]
    assert len(named) == 1, output
    assert named[0].startswith("Error: refusing to start, the keys do not load: cannot read key")
    assert str(path) in named[0] and "chmod 0400" in named[0]
    assert "Traceback" not in output
    assert "Booting worker" not in output
