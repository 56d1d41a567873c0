"""Several medchat hosts on one PostgreSQL and one Redis: real servers in subprocesses.

Each host is ``gunicorn -c deploy/gunicorn.conf.py wsgi:app`` (the production configuration)
on a port of its own, configured only through its environment, as a deployment is; the
commands (``python -m medchat ...``) run the same way. Nothing is shared between them but
the database, Redis and the key directory a deployment gives every host.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def host_environment(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without its ``MEDCHAT_*``, plus the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDCHAT_")}
    env.update(settings)
    env["PYTHONPATH"] = str(ROOT)
    return env


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Host:
    """One gunicorn master and its workers, in a process group of their own."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        sent = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Answer(response.status, dict(response.getheaders()), parsed)

    def wait_ready(self, timeout: float = 45.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.call("GET", "/readyz").status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the master, then SIGKILL to its group if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def start_host(
    name: str, settings: dict[str, str], workdir: Path, *, workers: int = 1, threads: int = 4
) -> Host:
    """Start a host (not waiting for it: start several, then ``wait_ready`` each)."""
    port = free_port()
    log = workdir / f"{name}.log"
    env = host_environment(
        {
            **settings,
            "MEDCHAT_BIND": f"127.0.0.1:{port}",
            "MEDCHAT_WORKERS": str(workers),
            "MEDCHAT_THREADS": str(threads),
        }
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Host(name, port, process, log)


def start_command(settings: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``python -m medchat ARGS`` as a host runs it (from cron), not waited for."""
    return subprocess.Popen(
        [sys.executable, "-m", "medchat", *args],
        cwd=ROOT,
        env=host_environment(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, str, str]:
    """Wait for a command; kill it past ``timeout`` (the test then fails on its status)."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        return -9, out, err
    return process.returncode, out, err
