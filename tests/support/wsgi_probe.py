"""A tiny WSGI app for serving ``deploy/gunicorn.conf.py`` in tests without a database.

``/slow?seconds=N`` answers after N seconds (at most 10); ``/process`` describes the worker
process as JSON (its GIL switch interval, which of the given modules it has loaded, though
this app imports none of them: ``?module=zxcvbn&module=medchat``, and whether it may dump
core: ``prctl(PR_GET_DUMPABLE)`` on Linux, else null, and its RLIMIT_CORE); ``/pid`` answers
the worker's process id; every other path answers at once.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs


def _dumpable() -> int | None:
    if not sys.platform.startswith("linux"):
        return None
    return int(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))  # PR_GET_DUMPABLE


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
                "dumpable": _dumpable(),
                "core_limit": list(resource.getrlimit(resource.RLIMIT_CORE)),
            }
        ).encode()
    elif environ.get("PATH_INFO") == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
