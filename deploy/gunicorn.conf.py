"""Gunicorn settings for medchat: tokens and personal data in URLs never reach a log line.

Every line is one JSON object on stderr. gunicorn writes no access log: the application
writes one line per request (``medchat.web.request_log``) with its route, the URL
*rule* (``/api/v1/conversations/<uuid:conversation_id>``), never the path, whose ids tie a
line to a member, nor the query string, the one part of a URL that a client, a mail link or a
careless integration can fill with secrets (a token, an e-mail address, a search for a
patient's name). A log line is copied to places the database's protections do not reach:
journald, log shippers, backups, support tickets. gunicorn's own lines (workers starting,
stopping, timing out) are rendered as JSON by ``JsonLogger`` below.

Behind the reverse proxy, ``%(h)s`` is the proxy's address; the client's address is
resolved by the application from ``X-Forwarded-For`` (``MEDCHAT_TRUSTED_PROXY_NETWORKS``,
``MEDCHAT_TRUSTED_PROXIES``: believed only from the proxy's own address) and is
recorded in the audit log. ``forwarded_allow_ips`` only decides whose ``X-Forwarded-Proto``
gunicorn believes (the request scheme); keep it to the proxy's address.

Read from the environment (the systemd unit's ``EnvironmentFile`` or the container's
``ENV``): ``MEDCHAT_BIND``, ``MEDCHAT_WORKERS``, ``MEDCHAT_THREADS``,
``MEDCHAT_FORWARDED_ALLOW_IPS`` and, optionally, ``MEDCHAT_REQUESTS_PER_CONNECTION`` and
``PROMETHEUS_MULTIPROC_DIR`` (below).
"""

import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime

from gunicorn.glogging import Logger

# -- Where to listen -------------------------------------------------------------------------
# 127.0.0.1 when nginx runs on the same host; the host's private address when a separate
# proxy forwards to several app hosts (deploy/nginx/medchat.conf).
bind = os.environ.get("MEDCHAT_BIND", "127.0.0.1:8000")

# -- Workers ---------------------------------------------------------------------------------
# Processes share nothing (sessions and tokens live in the database, rate-limit counters in
# Redis), so any number of workers on any number of hosts serve the same users.
_default_workers = min(2 * multiprocessing.cpu_count() + 1, 8)
workers = int(os.environ.get("MEDCHAT_WORKERS", _default_workers))
# gthread, answering its own request-parsing refusals in the API's JSON (``JsonErrorWorker``
# below; ``worker_class`` is set after it).
threads = int(os.environ.get("MEDCHAT_THREADS", "4"))

# -- Timeouts --------------------------------------------------------------------------------
# ``timeout``: a worker whose main loop has not checked in for 30 s is hung and is restarted.
# With gthread workers the main loop keeps checking in while a request runs in its thread, so
# this does not cut long requests short: the proxy does (35 s, proxy_read_timeout; longer for
# the archive verification). systemd waits 35 s (TimeoutStopSec) after the 30 s gracefully
# given to finish requests.
timeout = 30
graceful_timeout = 30
keepalive = 5

# A kept-alive connection is closed after this many requests (its last answer says
# ``Connection: close``; ``JsonErrorWorker`` below), as Apache's ``MaxKeepAliveRequests`` and
# nginx's ``keepalive_requests`` do. A connection stays with the worker that accepted it, and
# nginx keeps up to 32 open to each host (deploy/nginx/medchat.conf): when a worker restarts
# (``max_requests`` below), the connections it held go to the workers still running, since the
# new one listens only once it has started, and stay there, and the new worker idles beside
# an overloaded one (a worker runs Python one thread at a time: about one core). Closing each
# connection after 100 requests hands the load out again within about a second of that load;
# it costs a new connection every 100 requests. Measured on 2 cores, 2 workers, 8 clients
# reading (bench/README.md, "Connections after a worker restarts"): with a restart every 2,500
# requests per worker, 435-488 requests a second without the limit and 606-692 with it; with
# no restart, 730-844 and 779-798.
requests_per_connection = int(os.environ.get("MEDCHAT_REQUESTS_PER_CONNECTION", "100"))
if requests_per_connection < 1:
    raise ValueError("MEDCHAT_REQUESTS_PER_CONNECTION must be 1 or more")

# Recycle workers now and then so a slow leak in a dependency never grows without bound;
# the jitter keeps all workers from restarting at the same moment. A worker's start costs
# about 0.35 s of CPU (importing medchat and building the app) and its first requests fill
# the statement caches again: at 2,000 requests that was 0.3 ms of CPU per request (a send
# costs 3-6 ms; bench/README.md); at 20,000 it is a tenth of that. Under full load
# on 16 workers each worker still restarts every few minutes.
max_requests = 20000
max_requests_jitter = 2000

# -- Logging (to stderr: journald or the container runtime collects it) ---------------------
# No access log: the application's request line replaces it (the module's docstring).
accesslog = None
errorlog = "-"


class _JsonFormatter(logging.Formatter):
    """gunicorn's records with the fields of the application's lines (time, level, logger,
    event); written here because the master never imports the application."""

    def format(self, record):
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class JsonLogger(Logger):
    """gunicorn's logger, every handler it sets up writing JSON."""

    def setup(self, cfg):
        super().setup(cfg)
        for handler in (*self.error_log.handlers, *self.access_log.handlers):
            handler.setFormatter(_JsonFormatter())


logger_class = JsonLogger

# -- Proxy and request limits ----------------------------------------------------------------
forwarded_allow_ips = os.environ.get("MEDCHAT_FORWARDED_ALLOW_IPS", "127.0.0.1")
proxy_protocol = False
# The same limits as nginx's large_client_header_buffers (4 x 8k, deploy/nginx/medchat.conf):
# a request line or header field over 8 KiB, or more than 100 header fields, is refused
# before the application sees it, 414 or 431 in the API's error body (below).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190


# -- Refusals gunicorn answers itself ---------------------------------------------------------
# A request line or headers over the limits never reach the application, so its error
# contract (API.md "Conventions": a JSON body, never an HTML page on /api) cannot apply, and
# gunicorn answers with an HTML page of its own. This worker answers those refusals with the
# contract's body instead: {"error": {"code", "message"}}, no-store. It does so on every path
# (the console's too): a request line that is too long was never parsed, so its path is not
# known. Every other malformed request (a request line, a method, an HTTP version, a chunk
# gunicorn cannot parse) is a JSON 400, an unsupported transfer coding a JSON 501; only the
# server's own errors (a configuration problem, a response header the application got
# wrong) keep gunicorn's answer.
def _json_error_worker():
    import json

    from gunicorn.http import errors
    from gunicorn.util import write_nonblock
    from gunicorn.workers.gthread import ThreadWorker

    refusals = {
        errors.LimitRequestLine: (414, "URI Too Long", "uri_too_long", "The URL is too long."),
        errors.LimitRequestHeaders: (
            431,
            "Request Header Fields Too Large",
            "headers_too_large",
            "The request headers are too large or too many.",
        ),
        errors.InvalidHeader: (400, "Bad Request", "bad_request", "A header is malformed."),
        errors.InvalidHeaderName: (400, "Bad Request", "bad_request", "A header is malformed."),
        errors.UnsupportedTransferCoding: (
            501,
            "Not Implemented",
            "not_implemented",
            "The transfer coding is not supported.",
        ),
        # Last: whatever else the client sent that gunicorn could not parse.
        errors.ParseException: (400, "Bad Request", "bad_request", "The request is malformed."),
    }
    servers_own = (
        errors.ConfigurationProblem,
        errors.InvalidResponseHeader,
        errors.InvalidResponseHeaderName,
    )

    class JsonErrorWorker(ThreadWorker):
        """gunicorn's gthread worker; ``refusals`` answered as JSON (see above)."""

        def handle_request(self, req, conn):
            # ``requests_per_connection`` (above): the last request of a connection is
            # answered with ``Connection: close``, so the client knows not to send another on it.
            served = getattr(conn, "medchat_requests", 0) + 1
            conn.medchat_requests = served
            if served >= requests_per_connection:
                req.must_close = True
            return super().handle_request(req, conn)

        def handle_error(self, req, client, addr, exc):
            named = [answer for kind, answer in refusals.items() if isinstance(exc, kind)]
            if not named or isinstance(exc, servers_own):
                return super().handle_error(req, client, addr, exc)
            status, reason, code, message = named[0]
            self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
            body = json.dumps({"error": {"code": code, "message": message}}).encode()
            head = (
                f"HTTP/1.1 {status} {reason}\r\n"
                "Connection: close\r\n"
                "Content-Type: application/json\r\n"
                "Cache-Control: no-store\r\n"
                "X-Content-Type-Options: nosniff\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode("latin-1")
            try:
                write_nonblock(client, head + body)
            except Exception:
                self.log.debug("Failed to send error message.")

    return JsonErrorWorker


worker_class = _json_error_worker()

# Each worker imports the application itself: no database connection or key material is
# created in the master and then shared across fork(), and a reload (HUP) starts workers on
# the application code as it is on disk now. (The master's key check runs in a child process
# for the same reason: ``check_keys`` below.)
preload_app = False

# The third-party libraries, though, are imported once in the master (``on_starting``) and
# inherited by every worker: a worker that starts (at boot, after ``max_requests``, after a
# crash) then only imports medchat and builds the app, about half of its start-up CPU
# otherwise, and the libraries' pages are shared between workers. Every third-party package
# the app imports is here (tests/e2e/test_worker_start.py fails naming one that is not):
# while a worker starts, its connections wait on the others (``requests_per_connection``).
# Importing them creates no connection, key or thread (the same test). The cost: a reload
# keeps these libraries as they were when the master started, so an upgrade of the
# dependencies needs a restart (deploy/README.md).
PRELOADED_LIBRARIES = (
    "bcrypt",
    "cryptography.hazmat.primitives.ciphers.aead",
    "cryptography.hazmat.primitives.asymmetric.mlkem",
    "cryptography.hazmat.primitives.hpke",
    "cryptography.hazmat.primitives.serialization",
    "flask",
    "flask_limiter",
    "flask_login",
    "flask_smorest",
    "flask_swagger_ui",
    "flask_wtf",
    "jinja2",
    "limits",
    "marshmallow",
    "PIL.Image",
    "PIL.ImageCms",
    "PIL.ImageOps",
    "pikepdf",
    "pillow_heif",
    "psycopg",
    "prometheus_client",
    "pyotp",
    "redis",
    "requests",
    "segno",
    "smtplib",
    "sqlite3",
    "sqlalchemy.dialects.postgresql.psycopg",
    "sqlalchemy.dialects.sqlite.pysqlite",
    "sqlalchemy.orm",
    "structlog",
    "webargs",
    "zxcvbn",
)


# -- No core dumps, no ptrace by the same user -------------------------------------------------
# A worker holds opened private keys (session keyrings, the unwrap memo) in memory while it
# serves a request, and Python cannot wipe most of them (bytes are immutable, the collector
# frees without clearing). A core dump would write that memory to disk, where the promises about
# data at rest do not reach (docs/security.md, "Key material in memory"). So every process of
# the server is made non-dumpable: RLIMIT_CORE 0 (the systemd units set LimitCORE=0 as well; their
# system-call filter refuses setrlimit, which is then already done) and, on Linux,
# prctl(PR_SET_DUMPABLE, 0), which also stops core dumps piped to a handler (systemd-coredump,
# apport) whatever the limit, and keeps other processes of the same user from ptrace-attaching
# or reading /proc/<pid>/mem. The master does it at start and every worker again after fork.
_PR_SET_DUMPABLE = 4


def forbid_core_dumps():
    """Make this process non-dumpable; raise if Linux refuses (never serve keys dumpable)."""
    import contextlib
    import resource

    # Refused by the unit's system-call filter: its LimitCORE=0 already applies.
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(error)}")


# -- Metrics: one /metrics for all the workers of this host ---------------------------------
# prometheus-client's multiprocess mode: each worker writes its counts to files in
# PROMETHEUS_MULTIPROC_DIR and /metrics adds them up (medchat/observability/). The directory
# must be set before a worker imports prometheus_client, must start empty, and must not be
# shared with another server. Unset, a private one is made under $TMPDIR (the unit's
# PrivateTmp, the container's --tmpfs /tmp) for this master's life. A worker that exits is
# marked dead, so its share of the live gauges (requests in flight) leaves the sum; its
# counters stay counted.
_METRICS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"
_made_metrics_directory = []


def prepare_metrics_directory():
    """The multiprocess directory, emptied of an earlier run's files, or a new private one."""
    path = os.environ.get(_METRICS_DIRECTORY)
    if not path:
        path = tempfile.mkdtemp(prefix="medchat-metrics-")
        _made_metrics_directory.append(path)
        os.environ[_METRICS_DIRECTORY] = path
        return path
    os.makedirs(path, mode=0o700, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))
    return path


# -- Keys: checked once by the master, before any worker -------------------------------------
# A worker that cannot load the server keys would exit with gunicorn's boot-error code, and the
# master then stops the whole server (issue 13 item 6). So the master checks first: it runs
# `medchat keys check` (the settings, every key file, the archive-signing pin and the role-key
# pins, exactly what a worker loads) in a child process, which keeps medchat itself out of the
# master (see preload_app), and refuses to start on the child's one-line reason. A worker that
# later finds the keys unreadable (files moved or re-permissioned, then a max_requests recycle)
# answers 503 and retries instead of exiting (medchat.web.standby, wsgi.py).
KEY_CHECK = (sys.executable, "-m", "medchat", "keys", "check")
KEY_CHECK_TIMEOUT = 120


def check_keys():
    """Run ``medchat keys check``; raise ``RuntimeError`` with its one-line reason on failure
    (gunicorn prints it as ``Error: <reason>`` and exits 1 before it listens)."""
    import subprocess

    done = subprocess.run(  # noqa: S603  # a fixed argument list: this interpreter, no shell
        KEY_CHECK, capture_output=True, text=True, timeout=KEY_CHECK_TIMEOUT, check=False
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["no reason given"]
        reason = lines[-1].removeprefix("error: ")
        raise RuntimeError(f"refusing to start, the keys do not load: {reason}")


def on_starting(server):
    import importlib

    forbid_core_dumps()
    check_keys()
    prepare_metrics_directory()
    for name in PRELOADED_LIBRARIES:
        importlib.import_module(name)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    for path in _made_metrics_directory:
        shutil.rmtree(path, ignore_errors=True)


def post_fork(server, worker):
    forbid_core_dumps()


# No runtime control socket (gunicorn 25.1+ opens one under $HOME by default): the service is
# managed through signals (systemd's reload sends HUP), the sandbox gives it no writable home,
# and a socket that can resize or stop the server is one more thing to guard. Older gunicorn
# versions ignore this name.
control_socket_disable = True
