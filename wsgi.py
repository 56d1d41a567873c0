"""WSGI entry point: ``gunicorn -c deploy/gunicorn.conf.py wsgi:app``.

Logs go to stderr as one JSON object per line (``medchat.observability.logs``). A worker whose
server keys cannot be loaded stays up, answering 503 until they can (``medchat.web.standby``):
it never exits with the code that makes gunicorn's master stop the whole server.
"""

from medchat import create_app
from medchat.observability.logs import configure_logging
from medchat.web.standby import WaitForKeys

configure_logging()
app = WaitForKeys(create_app)
