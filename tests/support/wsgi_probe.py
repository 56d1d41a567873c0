"""A tiny WSGI app for serving ``deploy/gunicorn.conf.py`` in tests without a database.

``/slow?seconds=N`` answers after N seconds (at most 10); ``/process`` describes the worker
process as JSON (its GIL switch interval, and which of the given modules it has loaded, though
this app imports none of them: ``?module=zxcvbn&module=medchat``); every other path answers at
once.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/slow":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        time.sleep(min(float(query.get("seconds", ["1"])[0]), 10.0))
        body = b"done"
    elif environ.get("PATH_INFO") == "/process":
        names = parse_qs(environ.get("QUERY_STRING", "")).get("module", [])
        body = json.dumps(
            {
                "switch_interval": sys.getswitchinterval(),
                "loaded": {name: name in sys.modules for name in names},
            }
        ).encode()
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
