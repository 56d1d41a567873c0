"""A chain head taken by the write a commit audits (``medchat.audit.heads``, PostgreSQL).

A message's append statement also locks a free chain head and draws one ``seq``; the commit
then appends to that head without a statement of its own. What must hold: the commit uses that
head and no other, it still waits (never fails) when every head was held at the append, a head
is never used by a transaction other than the one that locked it, never taken inside a
savepoint, taken once per transaction, and a commit of several entries draws the missing
``seq`` values after the held one. Every chain stays whole and verifies.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import event

from medchat import audit
from medchat.audit import heads
from medchat.services import message_append
from tests.support.accounts import login, make_member
from tests.support.audit import audit_entries, heads_held, in_thread, verify
from tests.support.conversations import start_conversation
from tests.support.messaging import CONVERSATIONS, asked, care_team, give_consent, send
from tests.support.plans import plans_after
from tests.support.sessions import sign_in

CHAINS = 4


@pytest.fixture
def app(make_app):
    return make_app(audit_chains=CHAINS)


@pytest.fixture(autouse=True)
def postgresql(runtime):
    if not runtime.database.is_postgresql:
        pytest.skip("SQLite's writers take the database's write lock: no head is taken early")


@pytest.fixture
def conversation(client, runtime):
    """A member's conversation, asked through the API, and the member's tokens."""
    care_team(runtime)
    tokens = login(client, runtime, make_member(runtime))
    give_consent(client, tokens)
    return f"{CONVERSATIONS}/{asked(client, tokens)}/messages", tokens


def lock_free_head(session):
    """What a write's statement returns for ``heads.hold``: a free head, locked, and a seq."""
    params = {"chains": heads.chain_order(session)}
    return heads._LOCK_FREE_HEAD_AND_ONE_NUMBER.one_or_none(session.connection(), params)


def assert_whole(runtime) -> None:
    rows = audit_entries(runtime)
    for chain in {row.chain for row in rows}:
        positions = [row.position for row in rows if row.chain == chain]
        assert positions == list(range(1, len(positions) + 1))
    result = verify(runtime)
    assert result.ok, result.reason


def test_a_sends_commit_appends_to_the_head_its_append_took(
    client, runtime, conversation, monkeypatch
):
    path, tokens = conversation

    def no_second_lock(*args):
        raise AssertionError("the commit locked a head of its own")

    monkeypatch.setattr(heads, "lock_head", no_second_lock)
    for n in range(6):
        assert send(client, tokens, path, f"message {n}").status_code == 201

    sent = [row for row in audit_entries(runtime) if row.action == "message.send"]
    assert len(sent) == 6
    assert_whole(runtime)


def test_a_send_waits_for_a_head_when_every_chain_was_held_at_its_append(
    client, runtime, conversation
):
    path, tokens = conversation
    answers = []
    with heads_held(runtime, *(heads.chain_name(i) for i in range(CHAINS))):
        writer = in_thread(lambda: answers.append(send(client, tokens, path, "Still there?")))
        writer.join(timeout=1)
        waited = writer.is_alive()
    writer.join(timeout=30)
    assert waited and [answer.status_code for answer in answers] == [201]
    assert_whole(runtime)


def test_a_head_held_by_a_rolled_back_transaction_is_not_used_by_the_next(runtime, monkeypatch):
    monkeypatch.setattr(heads.secrets, "randbelow", lambda n: 0)  # every commit on "audit"
    session = runtime.database.session()
    try:
        stale = lock_free_head(session)
        heads.hold(session, stale)
        session.rollback()
        # Another commit appends to that chain meanwhile.
        with runtime.database.transaction() as other:
            audit.record(other, "test.between")
        audit.record(session, "test.after")
        session.commit()
    finally:
        session.close()
    rows = audit_entries(runtime)
    assert [(row.action, row.chain, row.position) for row in rows] == [
        ("test.between", "audit", stale[1] + 1),
        ("test.after", "audit", stale[1] + 2),
    ]
    assert_whole(runtime)


def test_a_head_is_taken_once_per_transaction_and_never_in_a_savepoint(runtime):
    session = runtime.database.session()
    try:
        session.connection()
        assert heads.may_hold(session)
        with session.begin_nested():
            assert not heads.may_hold(session)
        heads.hold(session, lock_free_head(session))
        assert not heads.may_hold(session)
        session.rollback()
        session.connection()
        assert heads.may_hold(session)
    finally:
        session.close()


def test_a_transaction_of_several_appends_takes_one_head(runtime):
    care_team(runtime)
    member = sign_in(runtime, make_member(runtime)).principal
    seen: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        seen.append(statement)

    event.listen(runtime.database.engine, "before_cursor_execute", record)
    try:
        start_conversation(runtime, member, subject=None, bodies=["one", "two", "three"])
    finally:
        event.remove(runtime.database.engine, "before_cursor_execute", record)
    appends = [sql for sql in seen if "INSERT INTO messages" in sql]
    assert len(appends) == 3
    assert ["free_head" in sql for sql in appends] == [True, False, False]
    assert not any("FOR UPDATE SKIP LOCKED" in sql for sql in seen if sql not in appends)
    assert_whole(runtime)


def test_no_head_held_when_the_write_found_none_free(runtime):
    session = runtime.database.session()
    try:
        session.connection()
        heads.hold(session, (None, None, None, None))
        assert heads.HELD not in session.info and heads.may_hold(session)
    finally:
        session.rollback()
        session.close()


def test_a_commit_of_several_entries_on_a_held_head_draws_the_rest_after_it(runtime):
    with runtime.database.transaction() as session:
        chain, position, _, (first,) = held = lock_free_head(session)
        heads.hold(session, held)
        for n in range(3):
            audit.record(session, "test.several", details={"n": n})

    rows = audit_entries(runtime)
    assert [(row.chain, row.position) for row in rows] == [
        (chain, position + 1),
        (chain, position + 2),
        (chain, position + 3),
    ]
    assert rows[0].seq == first < rows[1].seq < rows[2].seq
    assert [row.details for row in rows] == [f'{{"n":{n}}}' for n in range(3)]
    assert_whole(runtime)


def test_concurrent_sends_leave_every_chain_whole(client, runtime, conversation):
    path, tokens = conversation
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for n in range(8):
                assert send(client, tokens, path, f"{worker}-{n}").status_code == 201
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    workers = [in_thread(lambda w=w: work(w)) for w in range(4)]
    for thread in workers:
        thread.join(timeout=120)
    assert errors == []
    assert len([row for row in audit_entries(runtime) if row.action == "message.send"]) == 32
    assert_whole(runtime)


def test_the_append_that_takes_a_head_is_planned_once_per_connection(runtime):
    """Like the commit's own head lock (``test_audit_commit``): a generic plan, made once."""
    params = {
        "conversation_id": uuid.uuid4(),  # no such row: nothing is written, nothing locked
        "now": None,
        "next_status": "open",
        "message_id": uuid.uuid4(),
        "author_role": "member",
        "author_id": uuid.uuid4(),
        "previous_count": 0,
        "body_ciphertext": b"",
        "chains": [heads.chain_name(0)],
    }
    statement = message_append._APPEND_AND_TAKE_HEAD.statement
    plans = plans_after(runtime.database.engine, statement, params, "INSERT INTO messages")
    assert len(plans) == 1 and plans[0][0] >= 1
