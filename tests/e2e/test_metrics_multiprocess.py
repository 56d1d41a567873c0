"""``/metrics`` under gunicorn adds up every worker of the host (issue 13 item 11).

gunicorn runs ``wsgi:app`` with ``deploy/gunicorn.conf.py`` as it is, two workers, on a fresh
SQLite database. Requests are answered, then every worker that answered them is stopped and
replaced: a scrape answered by a new worker, which served none of them, still counts them all.
That holds only when the workers share prometheus-client's multiprocess directory, which the
configuration makes (a private one under ``$TMPDIR`` here); the master's ``child_exit`` hook
removes a dead worker's live-gauge file (requests in flight), so the gauge sums live workers
only. Every line gunicorn and the application wrote is JSON.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
HEALTHZ = (("method", "GET"), ("route", "/healthz"), ("status", "200"))


def _environment(workdir: Path, port: int) -> dict[str, str]:
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("MEDCHAT_", "PROMETHEUS_"))
    }
    return {
        **inherited,
        "PYTHONPATH": str(ROOT),
        "TMPDIR": str(workdir),
        "MEDCHAT_DATABASE_URL": f"sqlite:///{workdir / 'medchat.sqlite3'}",
        "MEDCHAT_KEY_DIR": str(workdir / "keys"),
        "MEDCHAT_MAIL_URL": f"file://{workdir / 'mail'}",
        "MEDCHAT_BIND": f"127.0.0.1:{port}",
        "MEDCHAT_WORKERS": "2",
        "MEDCHAT_THREADS": "2",
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _workers(master: int) -> set[int]:
    """The live children of gunicorn's master (its workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == master and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def _wait_for(condition, what: str, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} within {seconds} s:\n{log.read_text()[-3000:]}")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes], Path, Path]]:
    if not Path("/proc/self/stat").exists():
        pytest.skip("finding gunicorn's workers reads /proc (Linux)")
    port = _free_port()
    environment = _environment(tmp_path, port)
    # Migrate, and let development make its key files, before two workers start at once.
    subprocess.run(
        [sys.executable, "-c", "from medchat.cli import main; main()", "db", "upgrade"],
        cwd=tmp_path,
        env=environment,
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        [sys.executable, "-c", "from medchat import create_app; create_app()"],
        cwd=tmp_path,
        env=environment,
        check=True,
        capture_output=True,
        timeout=120,
    )
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_for(lambda: len(_workers(process.pid)) == 2, "two workers", log)
            _wait_for(lambda: _answers(port), "gunicorn answering", log)
            yield port, process, tmp_path, log
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=40)


def _answers(port: int) -> bool:
    try:
        return _get(port, "/healthz")[0] == 200
    except OSError:
        return False


def test_every_worker_is_counted_even_after_it_is_gone(served):
    port, process, workdir, log = served
    (directory,) = workdir.glob("medchat-metrics-*")
    before = _samples(_get(port, "/metrics")[1])
    for _ in range(20):
        assert _get(port, "/healthz")[0] == 200
    first_workers = _workers(process.pid)

    # Replace every worker that answered: gunicorn starts new ones; child_exit marks the old
    # ones dead.
    for pid in first_workers:
        os.kill(pid, signal.SIGTERM)
    _wait_for(
        lambda: (
            len(_workers(process.pid) - first_workers) == 2
            and not _workers(process.pid) & first_workers
        ),
        "two new workers",
        log,
    )
    _wait_for(lambda: _answers(port), "the new workers answering", log)

    count = ("medchat_http_request_duration_seconds_count", HEALTHZ)
    for _ in range(4):  # whichever new worker answers
        status, text = _get(port, "/metrics")
        assert status == 200, text[:300]
        after = _samples(text)
        assert after[count] - before.get(count, 0) >= 20 + 1  # and the probes since
        assert after[("medchat_http_requests_in_flight", ())] == 1  # this scrape only
        assert after[("medchat_state_up", ())] == 1
    # The dead workers' live-gauge files are gone; their counters stay.
    files = {path.name for path in directory.iterdir()}
    for pid in first_workers:
        assert f"gauge_livesum_{pid}.db" not in files
    # A worker that answered none of the 20 (the master may give them all to one) wrote no
    # histogram; those that answered keep theirs, which the count above adds up.
    assert any(f"histogram_{pid}.db" in files for pid in first_workers)

    lines = log.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert any(r.get("logger") == "medchat.requests" for r in records)


def test_the_private_metrics_directory_is_removed_when_gunicorn_stops(served):
    _port, process, workdir, _log = served
    assert len(list(workdir.glob("medchat-metrics-*"))) == 1
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=40)
    assert list(workdir.glob("medchat-metrics-*")) == []
