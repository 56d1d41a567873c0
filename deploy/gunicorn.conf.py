"""Gunicorn settings for medchat: tokens and personal data in URLs never reach a log line.

The access log records the method and the *path* of each request (``%(U)s``), never the
request line (``%(r)s``), the query string (``%(q)s``) or the referrer (``%(f)s``). A query
string is the one part of a URL that a client, a mail link or a careless integration can
fill with secrets (a token, an e-mail address, a search for a patient's name), and a log
line is copied to places the database's protections do not reach: journald, log shippers,
backups, support tickets. Paths carry only opaque ids (UUIDs), so they are safe to keep.

Behind the reverse proxy, ``%(h)s`` is the proxy's address; the client's address is
resolved by the application from ``X-Forwarded-For`` (``MEDCHAT_TRUSTED_PROXY_NETWORKS``,
``MEDCHAT_TRUSTED_PROXIES``: believed only from the proxy's own address) and is
recorded in the audit log. ``forwarded_allow_ips`` only decides whose ``X-Forwarded-Proto``
gunicorn believes (the request scheme); keep it to the proxy's address.

Read from the environment (the systemd unit's ``EnvironmentFile`` or the container's
``ENV``): ``MEDCHAT_BIND``, ``MEDCHAT_WORKERS``, ``MEDCHAT_THREADS`` and
``MEDCHAT_FORWARDED_ALLOW_IPS``.
"""

import multiprocessing
import os

# -- Where to listen -------------------------------------------------------------------------
# 127.0.0.1 when nginx runs on the same host; the host's private address when a separate
# proxy forwards to several app hosts (deploy/nginx/medchat.conf).
bind = os.environ.get("MEDCHAT_BIND", "127.0.0.1:8000")

# -- Workers ---------------------------------------------------------------------------------
# Processes share nothing (sessions and tokens live in the database, rate-limit counters in
# Redis), so any number of workers on any number of hosts serve the same users.
_default_workers = min(2 * multiprocessing.cpu_count() + 1, 8)
workers = int(os.environ.get("MEDCHAT_WORKERS", _default_workers))
worker_class = "gthread"
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

# Recycle workers now and then so a slow leak in a dependency never grows without bound;
# the jitter keeps all workers from restarting at the same moment.
max_requests = 2000
max_requests_jitter = 200

# -- Logging (to stdout/stderr: journald or the container runtime collects them) -------------
accesslog = "-"
errorlog = "-"
# remote address, "METHOD /path", status, response bytes, duration in ms, user agent.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms "%(a)s"'

# -- Proxy and request limits ----------------------------------------------------------------
forwarded_allow_ips = os.environ.get("MEDCHAT_FORWARDED_ALLOW_IPS", "127.0.0.1")
proxy_protocol = False
limit_request_line = 8190

# Each worker imports the application itself: no database connection or key material is
# created in the master and then shared across fork(), and a reload (HUP) starts workers on
# the application code as it is on disk now.
preload_app = False

# The third-party libraries, though, are imported once in the master (``on_starting``) and
# inherited by every worker: a worker that starts (at boot, after ``max_requests``, after a
# crash) then only imports medchat and builds the app, about half of its start-up CPU
# otherwise, and the libraries' pages are shared between workers. Importing them creates no
# connection, key or thread. The cost: a reload keeps these libraries as they were when the
# master started, so an upgrade of the dependencies needs a restart (deploy/README.md).
PRELOADED_LIBRARIES = (
    "bcrypt",
    "cryptography.hazmat.primitives.ciphers.aead",
    "cryptography.hazmat.primitives.hpke",
    "flask",
    "flask_limiter",
    "flask_login",
    "flask_smorest",
    "flask_wtf",
    "jinja2",
    "limits",
    "marshmallow",
    "psycopg",
    "pyotp",
    "redis",
    "segno",
    "sqlalchemy.orm",
    "webargs",
    "zxcvbn",
)


def on_starting(server):
    import importlib

    for name in PRELOADED_LIBRARIES:
        importlib.import_module(name)


# No runtime control socket (gunicorn 25.1+ opens one under $HOME by default): the service is
# managed through signals (systemd's reload sends HUP), the sandbox gives it no writable home,
# and a socket that can resize or stop the server is one more thing to guard. Older gunicorn
# versions ignore this name.
control_socket_disable = True
