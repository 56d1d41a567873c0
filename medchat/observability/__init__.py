"""What the service says about itself: JSON logs, request ids, Prometheus metrics (issue 13).

``init_app`` is the one call the app factory makes: request ids, the request log line and
latency (``requests``), and ``GET /metrics`` (``endpoint``). ``logs.configure_logging`` is
for the processes that serve (``wsgi.py``). ``metrics`` holds the counters other modules
update; it imports nothing of medchat, so ``access_control`` may use it.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    # Imported here: ``metrics`` is imported by access_control, which the modules below
    # import in turn (through medchat.web and the models).
    from medchat.observability import endpoint, requests

    requests.init_app(app)
    app.register_blueprint(endpoint.bp)
