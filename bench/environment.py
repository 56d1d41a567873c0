"""A throw-away PostgreSQL database, key directory and gunicorn servers for one run.

Everything made here is removed again by ``Environment.close`` (database dropped, temporary
directory deleted, servers stopped), which ``__main__`` calls from a ``finally`` block, so an
error or Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
GUNICORN_CONF = REPO / "deploy" / "gunicorn.conf.py"


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def python_bin() -> str:
    candidate = BIN / "python"
    return str(candidate) if candidate.exists() else "python3"


@dataclass
class Server:
    """One gunicorn master (and its workers) in its own process group."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def wait_ready(self, path: str = "/readyz", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}:\n{self.tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def count_in_log(self, needle: str) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(needle)
        except OSError:
            return 0

    def stop(self) -> None:
        """SIGTERM to the master (graceful), then SIGKILL to the whole group if it lingers."""
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                pass
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        # Workers are in the master's group; make sure none outlived it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


@dataclass
class Environment:
    """Database, temporary directory and the ``MEDCHAT_*`` environment of one run."""

    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    workers: int = 4
    threads: int = 4
    #: Password costs of the accounts made in set-up (``--setup-costs``).
    bcrypt_rounds: int = 12
    scrypt_log2_n: int = 17
    #: Password costs of the servers: production's always, so a sign-in in the measured
    #: loop (the flood cell, ``bench.flood``) costs what it costs in production.
    server_bcrypt_rounds: int = 12
    server_scrypt_log2_n: int = 17
    db_name: str = field(default_factory=lambda: f"medchat_bench_{secrets.token_hex(4)}")
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="medchat-bench-")))
    servers: list[Server] = field(default_factory=list)
    db_created: bool = False

    # -- database ---------------------------------------------------------------------------

    def admin_conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.pg_host} port={self.pg_port} user={self.pg_user} dbname={dbname}"

    @property
    def conninfo(self) -> str:
        return self.admin_conninfo(self.db_name)

    @property
    def database_url(self) -> str:
        return f"postgresql://{self.pg_user}@{self.pg_host}:{self.pg_port}/{self.db_name}"

    def create_database(self) -> None:
        with psycopg.connect(self.admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.db_created = True
        log(f"created database {self.db_name}")

    def drop_database(self) -> None:
        if not self.db_created:
            return
        with psycopg.connect(self.admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        self.db_created = False
        log(f"dropped database {self.db_name}")

    # -- settings ---------------------------------------------------------------------------

    @property
    def key_dir(self) -> Path:
        path = self.tmp / "keys"
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def medchat_env(self) -> dict[str, str]:
        """Production-like settings; development mode only so server keys may be generated."""
        mail = self.tmp / "mail"
        mail.mkdir(exist_ok=True)
        return {
            "MEDCHAT_ENV": "development",
            "MEDCHAT_DATABASE_URL": self.database_url,
            "MEDCHAT_KEY_DIR": str(self.key_dir),
            "MEDCHAT_MAIL_URL": f"file://{mail}",
            "MEDCHAT_BCRYPT_ROUNDS": str(self.bcrypt_rounds),
            "MEDCHAT_SCRYPT_LOG2_N": str(self.scrypt_log2_n),
            # Tokens are made once in set-up; they must outlive the whole run.
            "MEDCHAT_ACCESS_TOKEN_MINUTES": "480",
            "MEDCHAT_RATELIMIT_STORAGE_URI": "memory://",
        }

    def process_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDCHAT_")}
        env.update(self.medchat_env())
        env.update(extra or {})
        return env

    def migrate(self) -> None:
        medchat = BIN / "medchat"
        command = [str(medchat)] if medchat.exists() else [python_bin(), "-m", "medchat"]
        subprocess.run(
            [*command, "db", "upgrade"],
            cwd=REPO,
            env=self.process_env(),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        log("migrated (medchat db upgrade)")

    # -- servers ----------------------------------------------------------------------------

    def start_server(
        self,
        name: str,
        app: str,
        extra_env: dict[str, str] | None = None,
        *,
        checkout: Path = REPO,
    ) -> Server:
        """``gunicorn -c deploy/gunicorn.conf.py <app>`` with the run's worker settings, in
        ``checkout`` with its own configuration (another commit's, for ``bench.versus``)."""
        port = free_port()
        gunicorn = BIN / "gunicorn"
        command = [str(gunicorn)] if gunicorn.exists() else [python_bin(), "-m", "gunicorn"]
        env = self.process_env(
            {
                "MEDCHAT_BIND": f"127.0.0.1:{port}",
                "MEDCHAT_WORKERS": str(self.workers),
                "MEDCHAT_THREADS": str(self.threads),
                "MEDCHAT_BCRYPT_ROUNDS": str(self.server_bcrypt_rounds),
                "MEDCHAT_SCRYPT_LOG2_N": str(self.server_scrypt_log2_n),
                **(extra_env or {}),
            }
        )
        log_path = self.tmp / f"{name}-gunicorn.log"
        handle = log_path.open("wb")
        process = subprocess.Popen(
            [*command, "-c", str(checkout / GUNICORN_CONF.relative_to(REPO)), app],
            cwd=checkout,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        server = Server(name, port, process, log_path)
        self.servers.append(server)
        server.wait_ready()
        log(f"{name}: gunicorn on 127.0.0.1:{port}, {self.workers} x {self.threads} threads")
        return server

    def stop_server(self, server: Server) -> None:
        server.stop()
        if server in self.servers:
            self.servers.remove(server)

    def close(self, keep_logs: Path | None = None) -> None:
        """Stop every server, drop the database, delete the temporary directory."""
        for server in list(self.servers):
            try:
                self.stop_server(server)
            except Exception as exc:  # keep cleaning up
                log(f"could not stop {server.name}: {exc!r}")
        try:
            self.drop_database()
        except Exception as exc:
            log(f"could not drop {self.db_name}: {exc!r}")
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for path in self.tmp.glob("*.log"):
                shutil.copy(path, keep_logs / path.name)
        shutil.rmtree(self.tmp, ignore_errors=True)
