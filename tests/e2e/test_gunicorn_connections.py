"""A kept-alive connection ends after 100 requests, so a worker that restarts gets its share.

A connection stays with the worker that accepted it, and nginx keeps connections open to
each host (``keepalive 32``, deploy/nginx/medchat.conf). When a worker restarts
(``max_requests``), the connections it held are opened again while its successor is still
starting, so they all go to the workers that are running, and they would stay there: the new
worker idles beside an overloaded one for as long as the connections live, which under load
is forever. ``deploy/gunicorn.conf.py`` answers a connection's 100th request with
``Connection: close`` and closes it (``requests_per_connection``), so the load is handed out
again. Served for real, with the deployment's config, on the tiny probe app.
"""

from __future__ import annotations

import os
import runpy
import signal
import socket
import time
from pathlib import Path

import pytest

REQUESTS_PER_CONNECTION = 100
CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "gunicorn.conf.py"


def test_the_limit_is_100_unless_the_environment_says_otherwise_and_never_below_1(monkeypatch):
    monkeypatch.delenv("MEDCHAT_REQUESTS_PER_CONNECTION", raising=False)
    assert runpy.run_path(str(CONFIG))["requests_per_connection"] == REQUESTS_PER_CONNECTION
    monkeypatch.setenv("MEDCHAT_REQUESTS_PER_CONNECTION", "7")
    assert runpy.run_path(str(CONFIG))["requests_per_connection"] == 7
    monkeypatch.setenv("MEDCHAT_REQUESTS_PER_CONNECTION", "0")
    with pytest.raises(ValueError, match="1 or more"):
        runpy.run_path(str(CONFIG))


class _KeptAlive:
    """One HTTP/1.1 connection, requests sent one at a time, answers read by Content-Length.

    Connected with its first request, as a proxy does: a connection accepted with nothing to
    read holds one of the worker's threads waiting for it (gunicorn waits up to 5 s).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.buffer = b""
        self.socket: socket.socket | None = None

    def get(self, path: str) -> tuple[dict[str, str], bytes]:
        if self.socket is None:
            self.socket = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.socket.sendall(f"GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 200"), lines[0]
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return headers, body

    def closed_by_the_server(self) -> bool:
        assert self.socket is not None
        self.socket.settimeout(10)
        return self.socket.recv(1) == b""

    def _more(self) -> None:
        assert self.socket is not None
        chunk = self.socket.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()


def test_a_connection_is_answered_close_at_its_hundredth_request_and_closed(served):
    port, _ = served
    connection = _KeptAlive(port)
    try:
        for number in range(1, REQUESTS_PER_CONNECTION):
            headers, body = connection.get("/pid")
            assert headers["connection"] == "keep-alive", number
        headers, body = connection.get("/pid")
        assert headers["connection"] == "close"
        assert body.isdigit()  # the last answer is whole
        assert connection.closed_by_the_server()
    finally:
        connection.close()


def _worker_pids(master: int) -> set[int]:
    children = f"/proc/{master}/task/{master}/children"
    with open(children) as listing:
        return {int(pid) for pid in listing.read().split()}


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")
def test_a_worker_that_restarts_gets_connections_again(served):
    """Four kept-alive clients all on the one worker; a second worker is started (``TTIN``
    to the master): once it has started, some of the clients' requests are answered by it
    within a connection's lifetime. Without the limit none ever is: the four connections
    never end."""
    port, _ = served
    clients = [_KeptAlive(port) for _ in range(4)]
    try:
        (first,) = {int(client.get("/pid")[1]) for client in clients}
        master = _master_of(first)
        os.kill(master, signal.SIGTTIN)
        deadline = time.monotonic() + 30
        while len(_worker_pids(master)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        (second,) = _worker_pids(master) - {first}
        answered_by: set[int] = set()
        # Until the new worker has started (slow on a busy machine), the clients' new
        # connections go to the first: more rounds of connections, not a fixed number.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for index, client in enumerate(clients):
                headers, body = client.get("/pid")
                answered_by.add(int(body))
                if headers["connection"] == "close":
                    client.close()
                    clients[index] = _KeptAlive(port)
            if second in answered_by:
                break
        assert second in answered_by
    finally:
        for client in clients:
            client.close()


def _master_of(worker: int) -> int:
    with open(f"/proc/{worker}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])
