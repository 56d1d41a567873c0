"""The token and the conversation's row check read in one statement (PostgreSQL).

``medchat.services.request_checks`` reads both for the views marked
``checks_conversation_row``; ``ConversationAccess.check`` takes the row check's part
(``row_check_prefetch``). What must hold: every marked view's check answers from those rows
(else the mark costs a read and saves nothing), every answer is the one the two statements
gave (the same status and error for every caller the row check refuses, and for a tampered
account), and a send locks no row its caller may not write.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import medchat.app
from access_control import crypto
from medchat.db import table_of
from medchat.models import Account, AuthToken, Conversation
from medchat.models.integrity import integrity_of
from medchat.services import conversation_access
from medchat.services.request_checks import token_and_row_check
from medchat.services.row_check_prefetch import (
    PREFETCHED,
    PrefetchedRowCheck,
    keep,
    prefetched_row_check,
)
from medchat.web.row_checks import ROW_CHECK_ATTRIBUTE
from tests.support.accounts import bearer, login, make_member
from tests.support.messaging import CONVERSATIONS, asked, care_team, claim, give_consent, send
from tests.support.tampering import flipped

CLINICIAN = "/api/v1/clinician/conversations"


@pytest.fixture
def team(runtime):
    return care_team(runtime)


@pytest.fixture
def member(client, runtime, team):
    tokens = login(client, runtime, make_member(runtime))
    give_consent(client, tokens)
    return tokens


@pytest.fixture
def other(client, runtime, team):
    tokens = login(client, runtime, make_member(runtime))
    give_consent(client, tokens)
    return tokens


@pytest.fixture
def doctor(client, runtime, team):
    return login(client, runtime, team.clinician)


@pytest.fixture
def taken(monkeypatch):
    """What each ``ConversationAccess.check`` got from the kept rows (None: it read again)."""
    seen: list[Any] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        rows = prefetched_row_check(*args, **kwargs)
        seen.append(rows)
        return rows

    monkeypatch.setattr(conversation_access, "prefetched_row_check", recording)
    return seen


def _read(client, tokens, conversation_id, base=CONVERSATIONS) -> Any:
    return client.get(f"{base}/{conversation_id}/messages", headers=bearer(tokens))


#: A request to each marked view that its check admits, by endpoint.
RECIPES: dict[str, Callable[..., Any]] = {
    "conversations.messages": lambda c, m, d, cid: _read(c, m, cid),
    "conversations.send": lambda c, m, d, cid: send(c, m, f"{CONVERSATIONS}/{cid}/messages", "Hi"),
    "clinician.messages": lambda c, m, d, cid: _read(c, d, cid, CLINICIAN),
    "clinician.reply": lambda c, m, d, cid: send(c, d, f"{CLINICIAN}/{cid}/messages", "Rest."),
}


def test_every_marked_view_checks_its_row_from_the_statement_of_its_token(
    app, client, runtime, member, doctor, taken
):
    """Enumerated from the URL map: a view marked without a recipe here fails, and each
    recipe's request must take the kept rows (on SQLite nothing is kept: it reads again)."""
    marked = {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if hasattr(app.view_functions[rule.endpoint], ROW_CHECK_ATTRIBUTE)
    }
    assert marked == set(RECIPES)
    conversation_id = asked(client, member)
    claim(client, doctor, conversation_id)
    for endpoint in sorted(marked, reverse=True):
        taken.clear()
        response = RECIPES[endpoint](client, member, doctor, conversation_id)
        assert response.status_code in (200, 201), (endpoint, response.get_json())
        assert len(taken) == 1, endpoint
        if runtime.database.is_postgresql:
            assert taken[0], endpoint
        else:
            assert taken[0] is None


def _answers(client, requests: list[Callable[[], Any]]) -> list[tuple[int, Any]]:
    answers = []
    for request in requests:
        response = request()
        body = response.get_json() or {}
        answers.append((response.status_code, body.get("error", {}).get("code")))
    return answers


def test_every_refusal_is_the_one_the_two_statements_gave(
    client, runtime, member, other, doctor, monkeypatch
):
    """Each caller the row check refuses, with the combined read and without it (the loader
    told no view is marked): the same status and error code, and none of them a success."""
    conversation_id = asked(client, member)
    sealed = asked(client, member, "To delete")
    assert client.delete(f"{CONVERSATIONS}/{sealed}", headers=bearer(member)).status_code == 202
    unknown = uuid.uuid4()
    dead = {"access_token": "not-a-token"}
    requests: list[Callable[[], Any]] = []
    for base, own in ((CONVERSATIONS, member), (CLINICIAN, doctor)):
        for target, tokens in (
            (conversation_id, other),
            (conversation_id, dead),
            (unknown, own),
            (sealed, own),
            (conversation_id, doctor if base == CONVERSATIONS else member),
        ):
            path = f"{base}/{target}/messages"
            requests.append(
                lambda path=path, tokens=tokens: client.get(path, headers=bearer(tokens))
            )
            requests.append(lambda path=path, tokens=tokens: send(client, tokens, path, "Hi"))
    combined = _answers(client, requests)
    monkeypatch.setattr(medchat.app, "row_check_of", lambda app, request: None)
    apart = _answers(client, requests)

    assert combined == apart
    assert all(status >= 400 for status, _ in combined)
    assert {status for status, _ in combined} == {401, 403, 404}


def test_a_tampered_role_is_refused_alike(client, runtime, member, monkeypatch):
    """A database writer makes a member's account a clinician's (the statement would then
    read the physician's wraps of any conversation): its tag no longer matches, and the
    answer is the token check's alone: the row refused, nothing read through it."""
    conversation_id = asked(client, member)
    account_id = client.get("/api/v1/me", headers=bearer(member)).get_json()["id"]
    with runtime.database.engine.begin() as connection:
        changed = connection.execute(
            update(table_of(Account))
            .where(table_of(Account).c.id == uuid.UUID(account_id))
            .values(role="clinician")
        )
        assert changed.rowcount == 1
    combined = _answers(client, [lambda: _read(client, member, conversation_id)])
    monkeypatch.setattr(medchat.app, "row_check_of", lambda app, request: None)
    apart = _answers(client, [lambda: _read(client, member, conversation_id)])
    assert combined == apart
    assert combined[0] == (409, "row_integrity_failed")


@pytest.mark.postgresql_only
def test_a_send_locks_only_a_conversation_its_caller_may_write(client, runtime, member, other):
    """The send's statement locks the row for its own member, and never another member's."""
    if not runtime.database.is_postgresql:
        pytest.skip("row locks are PostgreSQL's")
    conversation_id = uuid.UUID(asked(client, member))
    lock = text("SELECT id FROM conversations WHERE id = :id FOR UPDATE NOWAIT")

    def locked_after_check(tokens: dict[str, Any]) -> bool:
        session = runtime.database.session()
        try:
            now = runtime.clock.now()
            token_and_row_check(
                session, now, tokens["access_token"], conversation_id, for_update=True
            )
            with runtime.database.engine.connect() as probe:
                try:
                    probe.execute(lock, {"id": conversation_id})
                except OperationalError:
                    return True
                finally:
                    probe.rollback()
            return False
        finally:
            session.rollback()
            session.close()

    assert locked_after_check(member)
    assert not locked_after_check(other)


def test_kept_rows_answer_only_their_own_question_and_only_once():
    session = Session()
    conversation_id = uuid.uuid4()
    rows = [("row",)]

    def kept(**changes: Any) -> Any:
        fields = {"conversation_id": conversation_id, "holder": "member", "for_update": True}
        keep(session, PrefetchedRowCheck(**{**fields, **changes}, rows=rows))
        return prefetched_row_check(session, conversation_id, "member", for_update=True)

    assert kept() == rows
    assert prefetched_row_check(session, conversation_id, "member", for_update=True) is None
    assert kept(conversation_id=uuid.uuid4()) is None
    assert kept(holder="physician") is None
    assert kept(for_update=False) is None
    assert PREFETCHED not in session.info
    session.add(Conversation())
    assert kept() is None


def _tagged(model: Any) -> list[str]:
    spec = integrity_of(model)
    assert spec is not None
    return [*spec.columns, "row_tag"]


def _altered(value: Any, other_account: uuid.UUID) -> Any:
    """Another value of the same kind: what a database writer would put there."""
    if isinstance(value, uuid.UUID):
        return other_account
    if isinstance(value, bool):
        return not value
    if isinstance(value, (bytes, str)):
        return flipped(value)
    if isinstance(value, datetime):
        return value + timedelta(days=365)
    return value


#: Every deciding column of the token's row and of its account's row, and each row's tag.
_COLUMNS = [("auth_tokens", c) for c in _tagged(AuthToken)] + [
    ("accounts", c)
    for c in _tagged(Account)
    if c != "id"  # the tokens' foreign key holds it
]


@pytest.mark.parametrize(("table", "column"), _COLUMNS, ids=[f"{t}.{c}" for t, c in _COLUMNS])
def test_an_altered_token_or_account_column_is_refused_by_every_marked_view_alike(
    client, runtime, member, other, table, column, monkeypatch
):
    """Each column altered as a database writer would: every marked view refuses the
    request (never a success, never a 500), with the answer the token check alone gives."""
    conversation_id = asked(client, member)
    account_id = uuid.UUID(client.get("/api/v1/me", headers=bearer(member)).get_json()["id"])
    other_id = uuid.UUID(client.get("/api/v1/me", headers=bearer(other)).get_json()["id"])
    token_hash = crypto.token_hash(member["access_token"])
    key, where = ("token_hash", token_hash) if table == "auth_tokens" else ("id", account_id)
    with runtime.database.engine.connect() as connection:
        rows = table_of(AuthToken if table == "auth_tokens" else Account)
        stored = connection.execute(select(rows.c[column]).where(rows.c[key] == where)).scalar()
    if stored is None:
        altered = runtime.clock.now() if column.endswith("_at") else b"\x01" * 8
    else:
        altered = _altered(stored, other_id)
    assert altered != stored, f"{table}.{column}: the altered value is the stored one"
    with runtime.database.engine.begin() as connection:
        changed = connection.execute(
            update(rows).where(rows.c[key] == where).values({column: altered})
        )
        assert changed.rowcount == 1
    path = f"{CONVERSATIONS}/{conversation_id}/messages"
    requests = [
        lambda: client.get(path, headers=bearer(member)),
        lambda: send(client, member, path, "Hi"),
    ]
    combined = _answers(client, requests)
    monkeypatch.setattr(medchat.app, "row_check_of", lambda app, request: None)
    assert _answers(client, requests) == combined
    assert all(400 <= status < 500 for status, _ in combined), combined
