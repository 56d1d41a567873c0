"""``GET /metrics``: Prometheus' text format, from the staff networks only (issue 13 item 11).

Reached like the console and the staff API: ``/metrics`` is one of
``access_control.networks.STAFF_PATH_PREFIXES``, so a scraper outside
``MEDCHAT_STAFF_NETWORKS`` gets 403 ``network_not_allowed`` from ``medchat.web.security_headers``,
audited as every such refusal. There is no sign-in: Prometheus scrapes without one, and nothing
here is about a person (``medchat.observability.metrics`` says why).

Scrape each app host directly (``<host>:8000/metrics``), not through nginx, which answers 404
there: behind the balancer a scrape would describe whichever host it reached. Under gunicorn
the answer adds up every worker of the host (``PROMETHEUS_MULTIPROC_DIR``, multiprocess mode);
a lone process (tests, ``flask run``) answers with its own registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from medchat.observability.state import StateCollector
from medchat.web.context import db_session, runtime

bp = Blueprint("metrics", __name__)
MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"


class _ThisProcess(Collector):
    """The process-wide registry, as one collector of a scrape's own registry."""

    def collect(self) -> Iterator[Metric]:
        return iter(REGISTRY.collect())


@bp.get("/metrics")
def metrics() -> Response:
    """Every worker's counts (or this process's), then the database state."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROCESS_DIRECTORY):
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    context = runtime()
    registry.register(StateCollector(db_session(), context.clock, context.settings.response_target))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
