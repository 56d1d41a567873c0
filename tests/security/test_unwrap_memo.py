"""The unwrap memo saves the HPKE unwrap, never a check (``access_control.unwrap_memo``).

A process remembers a conversation key a session opened, sealed under a key derived from
that session's token. Logout and revocation still stop the session at once (the token row is
checked first, in every process), a deleted or swapped wrap is not served from memory,
another session cannot use an entry, and nothing new is written anywhere.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, select, update

from access_control.keyring import Keyring
from access_control.unwrap_memo import UnwrapMemo
from medchat.db import Base
from medchat.keys import conversation_keys
from medchat.models import AuthToken, Conversation, ConversationKeyWrap, Holder
from tests.support.accounts import bearer, login, make_member
from tests.support.dump import database_dump
from tests.support.messaging import CONVERSATIONS, asked, care_team, give_consent
from tests.support.sessions import principal_for


@pytest.fixture
def member_session(client, runtime):
    care_team(runtime)
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    return member, tokens


@pytest.fixture
def unwraps(monkeypatch):
    """Counts the HPKE unwraps of conversation keys."""
    calls = []
    real = conversation_keys.hybrid_kem.unwrap_key

    def counting(*args, **kwargs):
        calls.append(kwargs.get("context_id"))
        return real(*args, **kwargs)

    monkeypatch.setattr(conversation_keys.hybrid_kem, "unwrap_key", counting)
    return calls


def read(client, tokens, conversation_id):
    return client.get(f"{CONVERSATIONS}/{conversation_id}/messages", headers=bearer(tokens))


def memo_of(runtime) -> UnwrapMemo:
    return runtime.database.info["unwrap_memo"]


def snapshot(runtime) -> dict[str, list]:
    """Every row of every table, in a stable order."""
    with runtime.database.transaction() as session:
        return {
            table.name: sorted(
                (tuple(map(repr, row)) for row in session.execute(select(table))), key=repr
            )
            for table in Base.metadata.sorted_tables
        }


def test_a_session_reading_again_skips_the_unwrap(client, runtime, member_session, unwraps):
    _member, tokens = member_session
    conversation_id = asked(client, tokens)

    assert read(client, tokens, conversation_id).status_code == 200
    assert read(client, tokens, conversation_id).status_code == 200
    response = read(client, tokens, conversation_id)

    assert response.status_code == 200
    assert response.get_json()["items"][0]["body"] == "Question?"
    assert len(unwraps) == 1


def test_a_memo_hit_derives_no_private_key_either(client, runtime, member_session, monkeypatch):
    """What the memo saves includes deriving the session's key pair from its seed (ML-KEM-768
    key generation, which naming the key by its id needs): a read or a send it answers
    derives none."""
    _member, tokens = member_session
    conversation_id = asked(client, tokens)
    assert read(client, tokens, conversation_id).status_code == 200
    derived = []
    real = conversation_keys.hybrid_kem._expand_seed

    def counting(seed):
        derived.append(seed)
        return real(seed)

    monkeypatch.setattr(conversation_keys.hybrid_kem, "_expand_seed", counting)

    assert read(client, tokens, conversation_id).status_code == 200
    sent = client.post(
        f"{CONVERSATIONS}/{conversation_id}/messages",
        json={"body": "More."},
        headers=bearer(tokens),
    )

    assert sent.status_code == 201
    assert derived == []


def test_the_memo_writes_nothing_to_the_database(client, runtime, member_session, unwraps):
    _member, tokens = member_session
    conversation_id = asked(client, tokens)
    assert read(client, tokens, conversation_id).status_code == 200
    before = snapshot(runtime)

    assert read(client, tokens, conversation_id).status_code == 200

    assert len(unwraps) == 1  # served from the memo
    assert snapshot(runtime) == before
    sealed = [entry[2] for entry in memo_of(runtime)._entries.values()]
    assert sealed
    dump = database_dump(runtime.database.engine)
    assert not [s for s in sealed if s in dump]


def test_the_memo_holds_no_opened_key(client, runtime, member_session):
    member, tokens = member_session
    conversation_id = uuid.UUID(asked(client, tokens))
    assert read(client, tokens, conversation_id).status_code == 200

    # The DEK as the member's session opens it (the memo must not hold these bytes).
    principal = principal_for(runtime, tokens["access_token"])
    with runtime.database.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        wrap = session.scalar(
            select(ConversationKeyWrap.wrap).where(
                ConversationKeyWrap.conversation_id == conversation_id,
                ConversationKeyWrap.holder == Holder.MEMBER,
            )
        )
        dek = runtime.conversation_keys(session).open_key(
            conversation, principal.keyring, Holder.MEMBER
        )
    assert wrap is not None
    entries = list(memo_of(runtime)._entries.values())
    assert entries
    assert all(dek.of(1) not in sealed for _expires, _account, sealed in entries)
    assert all(account == member.id for _expires, account, _sealed in entries)


def test_logout_stops_the_session_at_once_and_forgets_it(client, runtime, member_session, unwraps):
    _member, tokens = member_session
    conversation_id = asked(client, tokens)
    assert read(client, tokens, conversation_id).status_code == 200
    assert len(memo_of(runtime)) == 1

    assert client.post("/api/v1/auth/logout", headers=bearer(tokens)).status_code == 204
    response = read(client, tokens, conversation_id)

    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"
    assert len(memo_of(runtime)) == 0


def test_a_revocation_by_another_process_stops_the_session_at_once(
    client, runtime, member_session, unwraps
):
    member, tokens = member_session
    conversation_id = asked(client, tokens)
    assert read(client, tokens, conversation_id).status_code == 200

    # Another host deletes the rows: this process's memo is not told.
    with runtime.database.transaction() as session:
        session.execute(delete(AuthToken).where(AuthToken.account_id == member.id))
    response = read(client, tokens, conversation_id)

    assert len(memo_of(runtime)) == 1  # still there, sealed, and of no use
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"


def test_an_expired_token_stops_at_once_whatever_the_memo_holds(
    client, runtime, member_session, unwraps
):
    _member, tokens = member_session
    conversation_id = asked(client, tokens)
    assert read(client, tokens, conversation_id).status_code == 200

    runtime.clock.advance(seconds=runtime.settings.access_token_ttl.total_seconds() + 1)
    response = read(client, tokens, conversation_id)

    assert response.status_code == 401


def test_another_session_of_the_same_member_cannot_use_the_entry(
    client, runtime, member_session, unwraps
):
    member, tokens = member_session
    conversation_id = asked(client, tokens)
    other = login(client, runtime, member)

    assert read(client, tokens, conversation_id).status_code == 200
    assert read(client, other, conversation_id).status_code == 200

    assert len(unwraps) == 2  # the second session unwrapped for itself
    assert len(memo_of(runtime)) == 2


def test_a_deleted_wrap_is_not_served_from_memory(client, runtime, member_session, unwraps):
    _member, tokens = member_session
    conversation_id = asked(client, tokens)
    assert read(client, tokens, conversation_id).status_code == 200

    with runtime.database.transaction() as session:
        session.execute(
            delete(ConversationKeyWrap).where(
                ConversationKeyWrap.conversation_id == uuid.UUID(conversation_id),
                ConversationKeyWrap.holder == Holder.MEMBER,
            )
        )
    response = read(client, tokens, conversation_id)

    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "history_pending"


def test_a_swapped_wrap_is_not_served_from_memory(client, runtime, member_session, unwraps):
    _member, tokens = member_session
    first = uuid.UUID(asked(client, tokens, "First?"))
    second = uuid.UUID(asked(client, tokens, "Second?"))
    assert read(client, tokens, first).status_code == 200
    assert read(client, tokens, second).status_code == 200

    # Someone who can write rows moves the first conversation's wrap onto the second.
    with runtime.database.transaction() as session:
        wrap = session.scalar(
            select(ConversationKeyWrap.wrap).where(
                ConversationKeyWrap.conversation_id == first,
                ConversationKeyWrap.holder == Holder.MEMBER,
            )
        )
        session.execute(
            update(ConversationKeyWrap)
            .where(
                ConversationKeyWrap.conversation_id == second,
                ConversationKeyWrap.holder == Holder.MEMBER,
            )
            .values(wrap=wrap)
        )
    response = read(client, tokens, second)

    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "key_integrity_failed"


def test_a_memo_that_is_off_unwraps_every_time(make_app, unwraps):
    app = make_app(unwrap_memo_seconds=0)
    client, runtime = app.test_client(), app.extensions["medchat"]
    care_team(runtime)
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    conversation_id = asked(client, tokens)

    for _ in range(3):
        assert read(client, tokens, conversation_id).status_code == 200

    assert len(unwraps) == 3
    assert len(memo_of(runtime)) == 0


def _session_keyring(memo_key: bytes, session_id: uuid.UUID, account_id: uuid.UUID) -> Keyring:
    keyring = Keyring(account_id)
    keyring.session_id = session_id
    keyring.memo_key = memo_key
    return keyring


def test_an_entry_opens_only_under_its_session_key_and_expires():
    now = [1000.0]
    memo = UnwrapMemo(300, capacity=2, monotonic=lambda: now[0])
    account, conversation, wrap, dek = uuid.uuid4(), uuid.uuid4(), b"w" * 1179, bytes(range(32))
    session = uuid.uuid4()
    mine = _session_keyring(b"k" * 32, session, account)
    memo.remember(mine, conversation, Holder.MEMBER, wrap, dek)

    assert memo.recall(mine, conversation, Holder.MEMBER, wrap) == dek
    assert (
        memo.recall(_session_keyring(b"x" * 32, session, account), conversation, "member", wrap)
        is None
    )
    assert memo.recall(mine, conversation, Holder.MEMBER, wrap + b"!") is None
    assert memo.recall(mine, uuid.uuid4(), Holder.MEMBER, wrap) is None
    assert memo.recall(mine, conversation, Holder.PHYSICIAN, wrap) is None
    assert memo.recall(Keyring(account), conversation, Holder.MEMBER, wrap) is None  # no token

    now[0] += 301
    assert memo.recall(mine, conversation, Holder.MEMBER, wrap) is None
    assert len(memo) == 0


def test_the_memo_is_bounded_and_cannot_be_pickled():
    import pickle

    memo = UnwrapMemo(300, capacity=2)
    keyring = _session_keyring(b"k" * 32, uuid.uuid4(), uuid.uuid4())
    conversations = [uuid.uuid4() for _ in range(3)]
    for conversation in conversations:
        memo.remember(keyring, conversation, Holder.MEMBER, b"w", bytes(32))

    assert len(memo) == 2
    assert memo.recall(keyring, conversations[0], Holder.MEMBER, b"w") is None  # evicted
    with pytest.raises(TypeError):
        pickle.dumps(memo)
