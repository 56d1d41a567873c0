"""``medchat.web.guard.loaded_principal``: steps after a view (the re-wrap drain) act only for
a caller the request signed in, never for Flask-Login's anonymous user."""

from __future__ import annotations

from flask import g

from medchat.web.guard import loaded_principal


def test_an_anonymous_user_is_no_principal(app):
    """Kills ``x_loaded_principal__mutmut_5`` (``or`` to ``and``): the anonymous user object
    is not None, and only its ``is_authenticated`` says it is nobody."""
    with app.test_request_context("/api/v1/service"):
        g._login_user = app.login_manager.anonymous_user()
        assert loaded_principal() is None
        g._login_user = None
        assert loaded_principal() is None
