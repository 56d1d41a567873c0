"""What a send writes to its conversation's row, as PostgreSQL stores it.

Every send updates its conversation (the count, the time). An update that changes no indexed
column stays in the row's heap page and writes no index (a HOT update); one that does gets a
new entry in each of the table's indexes. ``tests/unit/test_indexes.py`` holds the columns
from the metadata; this holds PostgreSQL to it.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event

from tests.support.accounts import login, make_member
from tests.support.messaging import CONVERSATIONS, asked, care_team, claim, give_consent, send


@pytest.fixture
def team(runtime):
    return care_team(runtime)


@pytest.fixture
def tokens(client, runtime, team):
    tokens = login(client, runtime, make_member(runtime))
    give_consent(client, tokens)
    return tokens


@pytest.mark.postgresql_only
def test_a_send_that_keeps_the_status_updates_its_conversation_heap_only(
    client, runtime, team, tokens
):
    """PostgreSQL's own count, around each send's statement, of the conversation updates it
    made heap-only (HOT: no index written): every send but those that move the status (an
    answer, the member's next message after it), which write ``status_since``, an indexed
    column (``tests/unit/test_indexes.py`` holds the rest from the metadata)."""
    if not runtime.database.is_postgresql:
        pytest.skip("heap-only updates are PostgreSQL's")
    counts: list[tuple[int, int]] = []
    before: list[tuple[int, int]] = []

    def updates(cursor) -> tuple[int, int]:
        row = cursor.connection.execute(
            "SELECT pg_stat_get_xact_tuples_updated('conversations'::regclass),"
            " pg_stat_get_xact_tuples_hot_updated('conversations'::regclass)"
        ).fetchone()
        return row[0], row[1]

    def ahead(connection, cursor, statement, parameters, context, executemany):
        if "UPDATE conversations SET" in statement:
            before.append(updates(cursor))

    def after(connection, cursor, statement, parameters, context, executemany):
        if "UPDATE conversations SET" in statement:
            updated, hot = updates(cursor)
            was_updated, was_hot = before.pop()
            counts.append((updated - was_updated, hot - was_hot))

    conversation_id = asked(client, tokens, "Question?")
    messages = f"{CONVERSATIONS}/{conversation_id}/messages"
    doctor = login(client, runtime, team.clinician)
    claim(client, doctor, conversation_id)
    answer = f"/api/v1/clinician/conversations/{conversation_id}/messages"
    engine = runtime.database.engine
    event.listen(engine, "before_cursor_execute", ahead)
    event.listen(engine, "after_cursor_execute", after)
    try:
        for who, where, body in (
            (tokens, messages, "More."),
            (doctor, answer, "An answer."),
            (doctor, answer, "And more."),
            (tokens, messages, "Thanks, but."),
            (tokens, messages, "Also."),
        ):
            runtime.clock.advance(seconds=1)  # each send moves last_message_at
            assert send(client, who, where, body).status_code == 201
    finally:
        event.remove(engine, "before_cursor_execute", ahead)
        event.remove(engine, "after_cursor_execute", after)
    # (rows updated, of them heap-only) by each send's statement.
    assert counts == [(1, 1), (1, 0), (1, 1), (1, 0), (1, 1)]
