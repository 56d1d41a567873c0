"""A failed write never puts its SQL parameters in a log (issue 12, item 13).

A statement's parameters are the very data the database seals or hashes: an e-mail's blind
index, a bcrypt hash, sealed fields (the first name among them since migration 0021).
SQLAlchemy formats them into a ``StatementError``'s text, which the error handler logs with its
trace, and into the SQL echo an operator turns on to debug; the engine hides them
(``hide_parameters``). PostgreSQL repeats them in its ``DETAIL`` ("Failing row contains ..."),
which the engine drops (``medchat.db``). The failure here is a NOT NULL violation reached
through the registration service, as a bug would reach it.
"""

from __future__ import annotations

import logging
from datetime import date

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from medchat.services.accounts import AccountService, NewMember
from medchat.web.errors import render_unexpected
from tests.support.leaks import found_in

CANARY_NAME = "Zenobie-Canarybird"


def _failing_registration(app, runtime) -> IntegrityError:
    """Register with a missing last name; the app's error handler logs the failure."""
    data = NewMember(
        email="canary@example.org",
        password="quokka-harbor-lantern-42",
        first_name=CANARY_NAME,
        last_name=None,  # type: ignore[arg-type]  # the bug: a NOT NULL column gets nothing
        birth_date=date(1971, 3, 9),
        sex="female",
    )
    try:
        with runtime.database.transaction() as session:
            AccountService(session, runtime).register_member(data)
    except IntegrityError as error:
        # As a view's unexpected error would be: logged with its trace, answered 500.
        with app.test_request_context("/api/v1/auth/register", method="POST"):
            assert render_unexpected(error).status_code == 500
        return error
    pytest.fail("the write did not fail")


def _flattened(parameters: object) -> list[object]:
    """The values a driver was handed: positional (SQLite) or named (psycopg), bytes wrapped
    in ``memoryview`` or psycopg's ``Binary``."""
    if isinstance(parameters, dict):
        parameters = list(parameters.values())
    if not isinstance(parameters, (list, tuple)):
        parameters = [parameters]
    values: list[object] = []
    for value in parameters:
        value = getattr(value, "obj", value)
        values.append(bytes(value) if isinstance(value, (memoryview, bytearray)) else value)
    return values


def test_a_failed_write_logs_neither_the_email_index_nor_the_password_hash(app, runtime, caplog):
    sent: list[object] = []

    def keep_parameters(_conn, _cursor, _statement, parameters, *_args) -> None:
        sent.extend(_flattened(parameters))

    # The SQL echo on (an operator debugging), and the app's own error log.
    caplog.set_level(logging.INFO)
    event.listen(runtime.database.engine, "before_cursor_execute", keep_parameters)
    try:
        error = _failing_registration(app, runtime)
    finally:
        event.remove(runtime.database.engine, "before_cursor_execute", keep_parameters)

    # The failing statement did carry both canaries, and the first name only sealed ...
    # (a stored hash is "$msb1$<scrypt parameters>$" followed by the bcrypt hash)
    hashes = [value for value in sent if isinstance(value, bytes) and b"$2b$" in value]
    index = runtime.profiles.email_index("canary@example.org")
    assert index in sent and hashes
    assert CANARY_NAME not in sent
    bcrypt_part = hashes[0][hashes[0].index(b"$2b$") :]
    canaries = {
        "first name": CANARY_NAME,
        "e-mail index": index,
        "bcrypt hash prefix": bcrypt_part[:29],
    }
    # ... and neither reached the log or the error's text.
    assert "INSERT INTO accounts" in caplog.text
    assert "Traceback" in caplog.text
    haystack = (caplog.text + str(error)).encode("utf-8")
    assert found_in(haystack, canaries) == []
    assert "hide_parameters" in str(error)


def test_every_engine_medchat_makes_hides_parameters(runtime):
    assert runtime.database.engine.hide_parameters is True
