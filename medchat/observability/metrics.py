"""The service's Prometheus metrics that code updates as things happen (issue 13 item 11).

Only ``prometheus_client`` is imported here, so that ``access_control`` can count sign-in
failures without pulling in Flask. Labels are fixed, small sets (a route's rule, a method, a
status, a budget's name): never an id, an address, an e-mail or anything a client chose, so
the series stay few and say nothing about anyone.

Under gunicorn every worker is a process of its own: with ``PROMETHEUS_MULTIPROC_DIR`` set
(``deploy/gunicorn.conf.py`` sets it before the workers start) each writes its values to
files there and ``/metrics`` adds them up (``medchat.web.metrics_endpoint``). The values
read from the database when scraped (re-wrap backlog, audit chain head, retention) are in
``medchat.observability.state``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# One series per counter, not a second ``_created`` one per label set.
disable_created_metrics()

#: From 5 ms to the archive verification's minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)

REQUEST_SECONDS = Histogram(
    "medchat_http_request_duration_seconds",
    "Time to answer a request, by route (the URL rule, never the path), method and status.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS_IN_FLIGHT = Gauge(
    "medchat_http_requests_in_flight",
    "Requests being answered now (all live workers together).",
    multiprocess_mode="livesum",
)
SIGN_IN_FAILURES = Counter(
    "medchat_sign_in_failures_total",
    "Wrong passwords (sign-in and step-up) and wrong second-factor codes.",
    ["factor"],
)
REFUSED_BEFORE_DISPATCH = Counter(
    "medchat_refused_before_dispatch_total",
    "Sign-ins answered 503 while this process's password work was full, before Flask handled "
    "them (medchat.web.password_gate); the first refusal of each second takes the full path.",
    ["dependency"],
)
LOCKOUTS = Counter(
    "medchat_sign_in_lockouts_total",
    "Failure budgets spent (access_control.sign_in_limits): 'address' locks one address out "
    "of one account, 'account' every address but the right password with a code, "
    "'second_factor' every sign-in of the account.",
    ["budget"],
)

#: ``access_control.sign_in_limits``' budgets, by the names the metric gives them.
BUDGET_NAMES = {
    "sign-in-pair": "address",
    "sign-in-account": "account",
    "sign-in-code": "second_factor",
}


def sign_in_failed(factor: str, spent_budgets: list[str]) -> None:
    """One wrong password (``factor="password"``) or code (``"second_factor"``), and the
    budgets it spent (``sign-in-pair``, ...): each is one lockout starting now."""
    SIGN_IN_FAILURES.labels(factor=factor).inc()
    for budget in spent_budgets:
        LOCKOUTS.labels(budget=BUDGET_NAMES[budget]).inc()
