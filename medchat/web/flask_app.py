"""The Flask class medchat runs on: two pieces of Flask's per-request work done once, not on
every request.

Both are Flask's documented hooks (``Flask.ensure_sync``, ``Flask.session_interface``), and
both answer exactly what Flask's own code answers:

- **``ensure_sync``** is called for every hook, view and flask-smorest decorator a request
  passes through (about twenty for an API request) and asks ``inspect.iscoroutinefunction``
  each time. The answer for a function never changes, so a function Flask returned as it is
  (a plain ``def``) is remembered, weakly: one made for one request (``after_this_request``)
  leaves the set with it. An ``async def`` is asked about every time, as before (medchat has
  none; its wrapper would hold the function and keep it alive).
- **The session cookie** is the console's; the API never sends one. Flask builds the cookie's
  signing serializer on every request before it looks for the cookie; ``ConsoleSessions``
  looks first, and a request without the cookie gets the same empty session Flask would
  give it. A request with one is read by Flask's own code.

Measured with ``python -m bench.instructions`` (bench/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any
from weakref import WeakSet

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without a serializer for a request with no cookie."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


class MedchatFlask(Flask):
    """Flask, with ``ensure_sync``'s answer kept per function and ``ConsoleSessions``."""

    session_interface = ConsoleSessions()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Functions Flask answered "already synchronous" for (it returned them as they are).
        self._sync: WeakSet[Callable[..., Any]] = WeakSet()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if func in self._sync:  # False for what cannot be referred to weakly
            return func
        made = super().ensure_sync(func)
        if made is func:
            with suppress(TypeError):  # not weakly referable: asked again next time
                self._sync.add(func)
        return made
