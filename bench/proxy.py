"""The deployment's nginx in front of medchat, for the sign-in flood cell (``--flood-via-nginx``).

In production a flood does not reach gunicorn directly: ``deploy/nginx/medchat.conf`` rate-limits
the sign-in routes for all addresses together (``limit_req``) and answers past the limit itself.
This runs the real ``nginx`` binary (Debian's; ``make nginx-deps``) on a loopback port, with the
shipped file's own sign-in pieces copied verbatim (the ``limit_req_zone`` line, the upstream's
keepalive lines, the ``location = /api/v1/auth/token`` and ``@sign_in_busy`` blocks), so the
measured limit is the one that ships. What is left out, and why: TLS and HTTP/2 (the bench's
clients speak plain HTTP/1.1 on loopback; a handshake per flood attempt would cost the flood's
load generator more, which would flatter the result), the staff-network walls and the access log
(no reader or flood route passes them).

medchat must then believe nginx's ``X-Forwarded-For`` (``MEDCHAT_TRUSTED_PROXY_NETWORKS``,
``MEDCHAT_TRUSTED_PROXIES``, as the shipped ``medchat.env.example`` sets them), so each flood
attempt still counts against its own client address.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

from bench.environment import free_port

SHIPPED = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "medchat.conf"
#: medchat's settings behind one proxy on this host.
TRUSTED_PROXY_ENV = {
    "MEDCHAT_TRUSTED_PROXY_NETWORKS": "127.0.0.1/32",
    "MEDCHAT_TRUSTED_PROXIES": "1",
}


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


def shipped_pieces(text: str) -> dict[str, str]:
    """The sign-in pieces of the shipped file, verbatim (comments dropped)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    text = "\n".join(lines)

    def one(pattern: str) -> str:
        found = re.findall(pattern, text, flags=re.S | re.M)
        if len(found) != 1:
            raise RuntimeError(f"deploy/nginx/medchat.conf: expected one match of {pattern!r}")
        return str(found[0])

    return {
        "zone": one(r"^limit_req_zone [^;]+;"),
        "keepalive": "\n".join(
            re.findall(
                r"^\s+(keepalive(?:_timeout)? [^;]+;)",
                one(r"^upstream medchat_app \{.*?^\}"),
                flags=re.M,
            )
        ),
        "sign_in": one(r"^    location = /api/v1/auth/token \{.*?^    \}"),
        "busy": one(r"^    location @sign_in_busy \{.*?^    \}"),
    }


CONFIG = """\
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream medchat_app {{
        server 127.0.0.1:{upstream};
{keepalive}
    }}
{zone}
    server {{
        listen 127.0.0.1:{port};
        server_name medchat.example.org;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Request-ID $request_id;
{sign_in}
{busy}
        location / {{
            proxy_pass http://medchat_app;
        }}
    }}
}}
"""


class NginxProxy:
    """``with NginxProxy(upstream_port) as proxy:`` nginx on ``proxy.port`` until the block ends."""

    def __init__(self, upstream_port: int) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (make nginx-deps)")
        self.binary = binary
        self.upstream_port = upstream_port
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="medchat-bench-nginx-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The master's, which leads nginx's process group (``bench.cpu`` counts its workers)."""
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> NginxProxy:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)  # no nginx and no directory left behind
            raise
        return self

    def _start(self) -> None:
        pieces = shipped_pieces(SHIPPED.read_text())
        config = CONFIG.format(
            dir=self.dir,
            upstream=self.upstream_port,
            port=self.port,
            keepalive=textwrap.indent(pieces["keepalive"], " " * 8),
            zone=textwrap.indent(pieces["zone"], " " * 4),
            sign_in=textwrap.indent(pieces["sign_in"].strip("\n"), " " * 4),
            busy=textwrap.indent(pieces["busy"].strip("\n"), " " * 4),
        )
        path = self.dir / "nginx.conf"
        path.write_text(config)
        base = [
            self.binary,
            "-p",
            str(self.dir),
            "-c",
            str(path),
            "-e",
            str(self.dir / "error.log"),
        ]
        subprocess.run([*base, "-t", "-q"], check=True)
        self.process = subprocess.Popen([*base, "-g", "daemon off;"], start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start listening")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
