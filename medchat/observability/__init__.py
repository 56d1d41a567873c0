"""What the service says about itself: JSON logs (``logs``), the Prometheus metrics code
updates as things happen (``metrics``) and those read from the database when scraped
(``state``). Nothing here knows Flask: the request log line and ``GET /metrics`` are the web
layer's (``medchat.web.request_log``, ``medchat.web.metrics_endpoint``), and
``logs.configure_logging`` is for the processes that serve (``wsgi.py``).
"""
