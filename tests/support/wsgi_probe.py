"""A tiny WSGI app for serving ``deploy/gunicorn.conf.py`` in tests without a database.

``/slow?seconds=N`` answers after N seconds (at most 10); every other path answers at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/slow":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        time.sleep(min(float(query.get("seconds", ["1"])[0]), 10.0))
        body = b"done"
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
