"""``MedchatFlask`` answers what Flask answers (``medchat.web.flask_app``): ``ensure_sync``
asked once per function, and no session serializer for a request without the console's
cookie."""

from __future__ import annotations

import gc
import inspect
import operator

import pytest
from flask import Flask, session
from flask.sessions import SecureCookieSessionInterface

from medchat.web.flask_app import ConsoleSessions, MedchatFlask


def _counting(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[object]:
    calls: list[object] = []
    original = getattr(module, name)

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_the_app_is_a_medchat_flask_with_console_sessions(app):
    assert type(app) is MedchatFlask
    assert isinstance(app.session_interface, ConsoleSessions)


def test_ensure_sync_asks_flask_once_per_function(monkeypatch):
    app = MedchatFlask(__name__)
    asked = _counting(monkeypatch, Flask, "ensure_sync")

    def view() -> str:
        return "ok"

    assert app.ensure_sync(view) is view
    assert app.ensure_sync(view) is view
    assert asked == [(app, view)]


def test_an_async_function_is_made_sync_as_flask_makes_it():
    app = MedchatFlask(__name__)

    async def view() -> str:
        return "ok"

    plain = Flask(__name__)
    try:
        expected = plain.ensure_sync(view)()
    except RuntimeError as refused:  # Flask without its "async" extra
        with pytest.raises(RuntimeError, match=str(refused)):
            app.ensure_sync(view)
        return
    made = app.ensure_sync(view)
    assert inspect.iscoroutinefunction(view) and not inspect.iscoroutinefunction(made)
    assert made() == expected
    # Not remembered: the wrapper would keep the function alive.
    assert len(app._sync) == 0


def test_a_function_made_for_one_request_leaves_the_memo():
    app = MedchatFlask(__name__)

    def make() -> object:
        def once() -> None:
            return None

        return once

    function = make()
    app.ensure_sync(function)
    assert function in app._sync
    held = len(app._sync)
    del function
    gc.collect()
    assert len(app._sync) == held - 1


def test_a_callable_that_cannot_be_held_weakly_is_asked_every_time(monkeypatch):
    app = MedchatFlask(__name__)
    asked = _counting(monkeypatch, Flask, "ensure_sync")
    # An itemgetter: no weak reference to it can be made.
    getter = operator.itemgetter(0)
    assert app.ensure_sync(getter) is getter
    assert app.ensure_sync(getter) is getter
    assert asked == [(app, getter), (app, getter)] and len(app._sync) == 0


@pytest.fixture
def cookie_app() -> MedchatFlask:
    app = MedchatFlask(__name__)
    app.config.update(SECRET_KEY="a test key of the console", SESSION_COOKIE_NAME="console")

    @app.get("/set")
    def set_value() -> str:
        session["who"] = "clinician"
        return "set"

    @app.get("/get")
    def get_value() -> str:
        return str(session.get("who"))

    return app


def test_no_cookie_no_serializer(cookie_app, monkeypatch):
    built = _counting(monkeypatch, SecureCookieSessionInterface, "get_signing_serializer")
    assert cookie_app.test_client().get("/get").text == "None"
    assert built == []


def test_a_cookie_is_read_and_written_by_flasks_own_code(cookie_app):
    client = cookie_app.test_client()
    assert client.get("/set").text == "set"
    assert client.get_cookie("console") is not None
    assert client.get("/get").text == "clinician"
    # A cookie signed with another key is an empty session, as Flask makes it.
    client.set_cookie("console", client.get_cookie("console").value[:-2] + "xx")
    assert client.get("/get").text == "None"


@pytest.mark.parametrize("secret_key", [None, "a key"])
@pytest.mark.parametrize("cookie", [None, "", "not-a-signed-value"])
def test_console_sessions_open_what_flask_opens(secret_key, cookie):
    results = []
    for interface in (ConsoleSessions(), SecureCookieSessionInterface()):
        app = Flask(__name__)
        app.config.update(SECRET_KEY=secret_key, SESSION_COOKIE_NAME="console")
        headers = {} if cookie is None else {"Cookie": f"console={cookie}"}
        with app.test_request_context("/", headers=headers) as context:
            opened = interface.open_session(app, context.request)
        results.append(None if opened is None else (type(opened), dict(opened)))
    assert results[0] == results[1]
    assert (results[0] is None) == (secret_key is None)


def test_the_module_names_no_other_hook():
    """What the class overrides, and nothing more: a new override is a new decision."""
    overridden = {
        name for name, value in vars(MedchatFlask).items() if callable(value) and name != "__init__"
    }
    assert overridden == {"ensure_sync"}
    assert {name for name in vars(ConsoleSessions) if not name.startswith("__")} == {"open_session"}
