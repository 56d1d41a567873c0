"""A body is sealed to the sequence number it is stored under, even when sends race.

On PostgreSQL the number and the message go in with one statement (``append_message``), so
the body is sealed to the number the caller read before that statement runs. A caller that
read the conversation without locking it can be overtaken by another send: the statement then
changes nothing, and the send locks the row, reads the number again and seals again. SQLite
runs one unit of work at a time, so nothing overtakes there.
"""

from __future__ import annotations

import pytest

from access_control.crypto import DecryptionFailed
from medchat.errors import KeyIntegrityFailure
from medchat.services.conversation_access import ConversationAccess
from medchat.services.conversations import ConversationService
from tests.support.accounts import make_member
from tests.support.conversations import read_bodies, reply, start_conversation
from tests.support.messaging import care_team
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql


def test_a_send_overtaken_by_another_seals_to_the_number_it_gets(runtime):
    if not runtime.database.is_postgresql:
        pytest.skip("SQLite runs one unit of work at a time (BEGIN IMMEDIATE)")
    team = care_team(runtime)
    member = sign_in(runtime, make_member(runtime)).principal
    doctor = sign_in(runtime, team.clinician).principal
    started = start_conversation(runtime, member, subject=None, bodies=["first"])
    with runtime.database.transaction() as session:
        access = ConversationAccess(session, runtime)
        conversation = access.load(doctor, started.id)  # read, not locked: count 1
        dek = access.open_key(doctor, conversation)
        reply(runtime, member, started.id, "second")  # commits number 2 meanwhile
        sent = ConversationService(session, runtime).append_message(
            conversation, dek, doctor, "third"
        )
    assert sent.seq == 3
    assert read_bodies(runtime, member, started.id) == ["first", "second", "third"]

    # Bound to those numbers: the two swapped in SQL no longer open.
    sql = "UPDATE messages SET seq = :seq WHERE id = :id"
    execute_sql(runtime, sql, seq=-1, id=sent.id)
    execute_sql(
        runtime,
        "UPDATE messages SET seq = 3 WHERE conversation_id = :c AND seq = 2",
        c=started.id,
    )
    execute_sql(runtime, sql, seq=2, id=sent.id)
    with pytest.raises((DecryptionFailed, KeyIntegrityFailure)):
        read_bodies(runtime, member, started.id)
