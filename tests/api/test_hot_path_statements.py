"""Regression guards for the two hot paths: how many SQL statements a send and a read run,
that each is rendered to SQL once, and that the hand-shaped message JSON is exactly what the
documented schema dumps.

Counts only, never times: each statement is a round trip and CPU in both the application
and PostgreSQL, and the benchmark (bench/README.md) depends on these staying few.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import marshmallow
import pytest
from sqlalchemy import event
from sqlalchemy.sql.elements import (
    ReleaseSavepointClause,
    RollbackToSavepointClause,
    SavepointClause,
)

from medchat.schemas.conversations import MessagePageSchema, MessageSchema, message_json
from medchat.services.conversation_views import AttachmentView, MessageView
from medchat.services.message_views import _PAGES, PAGE_COLUMNS
from tests.support.accounts import bearer, login, make_member
from tests.support.made import objects_made
from tests.support.messaging import CONVERSATIONS, asked, care_team, claim, give_consent, send

#: SQLAlchemy's savepoint statements, which it makes at each use.
_SAVEPOINTS = (SavepointClause, ReleaseSavepointClause, RollbackToSavepointClause)
#: Transaction control is not counted.
_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@pytest.fixture
def team(runtime):
    return care_team(runtime)


@pytest.fixture
def member_tokens(client, runtime, team):
    tokens = login(client, runtime, make_member(runtime))
    give_consent(client, tokens)
    return tokens


@pytest.fixture
def statements(runtime):
    """The first word of every statement the app's engine runs while recording."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        word = statement.split()[0].upper()
        if word not in _CONTROL:
            seen.append(word)

    engine = runtime.database.engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_a_send_runs_three_statements_on_postgresql(client, runtime, member_tokens, statements):
    conversation_id = asked(client, member_tokens)
    path = f"{CONVERSATIONS}/{conversation_id}/messages"
    assert send(client, member_tokens, path, "warm-up").status_code == 201
    statements.clear()

    assert send(client, member_tokens, path, "How long should I wait?").status_code == 201

    if runtime.database.is_postgresql:
        # token with the conversation row (locked) + wraps + consent
        # (``medchat.services.request_checks``); sequence UPDATE + message INSERT + a free
        # audit chain head locked with the entry's seq (CTEs); audit entry + new head (sent
        # with the COMMIT).
        assert statements == ["SELECT", "WITH", "WITH"]
    else:
        assert statements == ["SELECT", "SELECT", "UPDATE", "INSERT", "SELECT", "INSERT", "UPDATE"]


def test_a_page_read_runs_two_statements_on_postgresql(client, runtime, member_tokens, statements):
    conversation_id = asked(client, member_tokens)
    path = f"{CONVERSATIONS}/{conversation_id}/messages"
    for n in range(3):
        assert send(client, member_tokens, path, f"message {n}").status_code == 201
    assert client.get(path, headers=bearer(member_tokens)).status_code == 200
    statements.clear()

    response = client.get(path + "?limit=2", headers=bearer(member_tokens))

    assert response.status_code == 200
    assert len(response.get_json()["items"]) == 2
    # token with the conversation row + wraps (on SQLite two statements); the page with
    # names and attachment flags.
    assert statements == ["SELECT"] * (2 if runtime.database.is_postgresql else 3)


def test_on_postgresql_a_page_read_opens_no_transaction_and_a_send_one(
    client, runtime, member_tokens
):
    """A member's read only reads: its two statements run outside a transaction (no
    ``BEGIN``, no ``COMMIT``: two round trips fewer). A send's token check, read with its
    locked row check, opens the transaction every later statement and the commit share."""
    if not runtime.database.is_postgresql:
        pytest.skip("SQLite's transactions are the unit of work's (BEGIN IMMEDIATE)")
    from psycopg.pq import TransactionStatus

    conversation_id = asked(client, member_tokens)
    path = f"{CONVERSATIONS}/{conversation_id}/messages"
    assert send(client, member_tokens, path, "warm-up").status_code == 201
    seen: list[tuple[str, str]] = []

    def record(conn, cursor, statement, *args) -> None:
        status = cursor.connection.info.transaction_status
        seen.append((statement.split()[0].upper(), TransactionStatus(status).name))

    engine = runtime.database.engine
    event.listen(engine, "after_cursor_execute", record)
    try:
        assert client.get(path, headers=bearer(member_tokens)).status_code == 200
        read = list(seen)
        seen.clear()
        assert send(client, member_tokens, path, "And then?").status_code == 201
        sent = list(seen)
    finally:
        event.remove(engine, "after_cursor_execute", record)

    assert read == [("SELECT", "IDLE")] * 2
    # The pipelined write is answered at the COMMIT: its cursor reports the pipeline's state.
    assert sent[:2] == [("SELECT", "INTRANS"), ("WITH", "INTRANS")]
    assert len(sent) == 3


@pytest.fixture
def rendered_each_time(runtime):
    """Statements whose SQL SQLAlchemy renders again at every execution: those with an
    "expanding" parameter (``IN`` over a list), the per-execution cost the compiled cache
    otherwise saves."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        compiled = getattr(context, "compiled", None)
        if getattr(compiled, "post_compile_params", None) or getattr(
            compiled, "literal_execute_params", None
        ):
            seen.append(" ".join(statement.split())[:120])

    engine = runtime.database.engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_every_statement_of_a_send_and_a_page_read_is_rendered_once(
    both_audiences, rendered_each_time
):
    """For the member and the doctor alike: the hot statements are compiled once per process
    and reused, never re-rendered because of an ``IN`` list."""
    rendered_each_time.clear()

    both_audiences()

    assert rendered_each_time == []


def _view(author: str, name: str | None, attachments: list[AttachmentView]) -> MessageView:
    return MessageView(
        id=uuid.uuid4(),
        author=author,
        author_name=name,
        body="Bonjour, ça va ? <b>&</b>",
        created_at=datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC),
        seq=7,
        attachments=attachments,
    )


def test_a_page_is_read_in_the_column_order_its_rows_are_unpacked_in():
    """``message_page`` reads each row by position: the page statements' columns are
    ``PAGE_COLUMNS``, in that order, whichever way and from wherever the page is read."""
    for statement in _PAGES.values():
        assert tuple(column.key for column in statement.statement.selected_columns) == PAGE_COLUMNS


def test_message_json_is_exactly_what_the_schema_dumps():
    views = [
        _view("member", None, []),
        _view(
            "clinician",
            "Dr. M.",
            [
                AttachmentView(uuid.uuid4(), "scan.pdf", "application/pdf", 1234),
                AttachmentView(uuid.uuid4(), "x.png", "image/png", 0),
            ],
        ),
    ]

    for view in views:
        assert message_json(view) == MessageSchema().dump(view)
    page = {"items": views, "next_cursor": "Nw"}
    assert {
        "items": [message_json(v) for v in views],
        "next_cursor": "Nw",
    } == MessagePageSchema().dump(page)


def test_the_openapi_document_still_names_the_message_schemas(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]

    for path in (
        "/api/v1/conversations/{conversation_id}/messages",
        "/api/v1/clinician/conversations/{conversation_id}/messages",
    ):
        page = paths[path]["get"]["responses"]["200"]["content"]["application/json"]
        sent = paths[path]["post"]["responses"]["201"]["content"]["application/json"]
        assert page["schema"]["$ref"].endswith("/MessagePage")
        assert sent["schema"]["$ref"].endswith("/Message")


@pytest.fixture
def both_audiences(client, runtime, team, member_tokens):
    """A member's and a doctor's send and page read of one conversation, run once to warm
    the statement caches; calling it runs the four again."""
    conversation_id = asked(client, member_tokens)
    doctor = bearer(login(client, runtime, team.clinician))
    claim(client, doctor, conversation_id)
    member_path = f"{CONVERSATIONS}/{conversation_id}/messages"
    doctor_path = f"/api/v1/clinician/conversations/{conversation_id}/messages"

    def run() -> None:
        assert send(client, member_tokens, member_path, "A follow-up.").status_code == 201
        assert client.get(member_path, headers=bearer(member_tokens)).status_code == 200
        assert client.post(doctor_path, json={"body": "Another."}, headers=doctor).status_code
        assert client.get(doctor_path, headers=doctor).status_code == 200

    run()
    return run


def test_a_warm_send_and_page_read_make_no_column_descriptions(
    runtime, both_audiences, monkeypatch
):
    """psycopg builds a ``Column`` per result column whenever ``cursor.description`` is read;
    SQLAlchemy reads it after every statement but needs it only the first time a compiled
    statement runs. With ``medchat.db_cursor`` a warm send or read makes none (PostgreSQL)."""
    if not runtime.database.is_postgresql:
        pytest.skip("psycopg's column descriptions: PostgreSQL only")
    import psycopg

    made = objects_made(monkeypatch, psycopg.Column)
    both_audiences()

    assert made == []


def test_a_warm_send_and_page_read_make_no_schema_objects(both_audiences, monkeypatch):
    """A marshmallow schema deep-copies its declared fields when made (about 0.1 ms each);
    the arguments of a view are parsed with schema objects made once, not one per request."""
    made = objects_made(monkeypatch, marshmallow.Schema)
    both_audiences()

    assert made == []


def test_a_warm_send_and_page_read_build_no_statement(runtime, both_audiences):
    """For the member and the doctor alike, every statement a warm send or read runs is an
    object made before (a module constant with bound parameters), never one built for the
    request: building a statement, and SQLAlchemy's cache key of it, costs more CPU than
    running it."""
    ran: list[object] = []

    def record(conn, clauseelement, *args) -> None:
        if not isinstance(clauseelement, _SAVEPOINTS):  # SQLAlchemy's own, made per use
            ran.append(clauseelement)

    engine = runtime.database.engine
    event.listen(engine, "before_execute", record)
    try:
        both_audiences()
        first = {id(statement) for statement in ran}
        kept = list(ran)  # held, so no id is reused by a statement made later
        ran.clear()
        both_audiences()
    finally:
        event.remove(engine, "before_execute", record)

    built = [str(s).split("\n")[0][:100] for s in ran if id(s) not in first]
    assert kept and built == []
