"""WSGI entry point: ``gunicorn -c deploy/gunicorn.conf.py wsgi:app``.

Logs go to stderr as one JSON object per line (``medchat.observability.logs``).
"""

from medchat import create_app
from medchat.observability.logs import configure_logging

configure_logging()
app = create_app()
