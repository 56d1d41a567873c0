"""Conversations from before key epochs join them online and resumably (issue 18, item 2).

Migration 0016 changes the schema only; the conversations already there have their wraps and
content in epoch 1 and no epoch row, their conversation row standing for epoch 1. The service
reads and writes them from the first moment (a write starts epoch 2: their only DEK predates
every rule of epochs), and ``medchat keys migrate-epochs`` records their epoch-1 rows in
batches, needing no password, resumable at any point, while messages go on. A conversation
whose key set was altered is refused, not vouched for. The rows it writes are tagged like any
other: altered afterwards, the conversation is refused, never read under a swapped key.
"""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from medchat.keys.epoch_migration import EpochMigration, remaining_conversations
from medchat.models import Conversation, ConversationKeyEpoch
from tests.support.accounts import bearer, login, make_member
from tests.support.cli import cli_runner
from tests.support.messaging import CONVERSATIONS, asked, care_team, claim, give_consent, send
from tests.support.tampering import execute_sql

CLINICIAN = "/api/v1/clinician/conversations"


@pytest.fixture
def before_epochs(client, runtime):
    """Five answered conversations, stored as the release before 0016 left them."""
    team = care_team(runtime)
    member = login(client, runtime, make_member(runtime))
    give_consent(client, member)
    doctor = login(client, runtime, team.clinician)
    ids = []
    for n in range(5):
        conversation_id = asked(client, member, f"question {n}", subject=f"subject {n}")
        claim(client, doctor, conversation_id)
        answer = send(client, doctor, f"{CLINICIAN}/{conversation_id}/messages", f"answer {n}")
        assert answer.status_code == 201
        ids.append(conversation_id)
    assert execute_sql(runtime, "DELETE FROM conversation_key_epochs") == 5
    return member, doctor, ids


def bodies(client, auth, path: str) -> list[str]:
    response = client.get(f"{path}/messages?order=asc&limit=100", headers=auth)
    assert response.status_code == 200, response.get_json()
    return [item["body"] for item in response.get_json()["items"]]


def epochs_of(runtime, conversation_id: str) -> list[int]:
    with runtime.database.transaction() as session:
        return sorted(
            session.scalars(
                select(ConversationKeyEpoch.epoch).where(
                    ConversationKeyEpoch.conversation_id == uuid.UUID(conversation_id)
                )
            )
        )


def remaining(runtime) -> int:
    with runtime.database.transaction() as session:
        return remaining_conversations(session)


def test_conversations_from_before_epochs_migrate_online_and_resumably(
    client, runtime, before_epochs
):
    member, doctor, ids = before_epochs
    # Read and written before the migration: the conversation row stands for epoch 1.
    for n, conversation_id in enumerate(ids):
        expected = [f"question {n}", f"answer {n}"]
        assert bodies(client, bearer(member), f"{CONVERSATIONS}/{conversation_id}") == expected
        assert bodies(client, bearer(doctor), f"{CLINICIAN}/{conversation_id}") == expected
    assert remaining(runtime) == 5

    first = EpochMigration(runtime, batch_size=2).run(max_batches=1)
    assert (first.migrated, first.finished, first.remaining) == (2, False, 3)

    # Meanwhile a message to a conversation not migrated yet starts epoch 2 (its only DEK
    # predates epochs) and the whole history still reads.
    last = next(
        conversation_id for conversation_id in ids if not epochs_of(runtime, conversation_id)
    )
    n = ids.index(last)
    assert send(client, member, f"{CONVERSATIONS}/{last}/messages", "later").status_code == 201
    assert epochs_of(runtime, last) == [2]
    assert bodies(client, bearer(doctor), f"{CLINICIAN}/{last}") == [
        f"question {n}",
        f"answer {n}",
        "later",
    ]

    rest = EpochMigration(runtime, batch_size=2).run()
    assert (rest.migrated, rest.finished, rest.remaining, rest.refused) == (3, True, 0, [])
    again = EpochMigration(runtime, batch_size=2).run()
    assert (again.migrated, again.remaining) == (0, 0)

    with runtime.database.transaction() as session:
        rows = {
            row.conversation_id: row
            for row in session.scalars(
                select(ConversationKeyEpoch).where(ConversationKeyEpoch.epoch == 1)
            )
        }
        for conversation in session.scalars(select(Conversation)):
            row = rows[conversation.id]
            assert row.key_commitment == conversation.key_commitment
            # What the DEK was sealed to was never stored: the epoch counts as begun before all.
            assert (row.member_key_id, row.physician_version, row.removals) == (None, 0, 0)
    assert epochs_of(runtime, last) == [1, 2]
    for n, conversation_id in enumerate(ids):
        history = bodies(client, bearer(member), f"{CONVERSATIONS}/{conversation_id}")
        assert history[:2] == [f"question {n}", f"answer {n}"]
    # A migrated epoch 1 is sealed to no more: the next message starts epoch 2.
    assert send(client, doctor, f"{CLINICIAN}/{ids[0]}/messages", "next").status_code == 201
    assert epochs_of(runtime, ids[0]) == [1, 2]


def test_a_conversation_whose_key_set_was_altered_is_refused(client, runtime, before_epochs):
    ids = before_epochs[2]
    execute_sql(
        runtime,
        "UPDATE conversations SET key_tag = :tag WHERE id = :id",
        tag=bytes(32),
        id=uuid.UUID(ids[1]),
    )

    result = EpochMigration(runtime, batch_size=10).run()

    assert result.refused == [uuid.UUID(ids[1])] and result.migrated == 4
    assert result.remaining == 1 and epochs_of(runtime, ids[1]) == []


def test_an_epoch_row_altered_after_the_migration_is_refused(client, runtime, before_epochs):
    member, _, ids = before_epochs
    EpochMigration(runtime).run()
    execute_sql(
        runtime,
        "UPDATE conversation_key_epochs SET key_commitment = :c WHERE conversation_id = :id",
        c=bytes(32),
        id=uuid.UUID(ids[0]),
    )

    response = client.get(f"{CONVERSATIONS}/{ids[0]}/messages", headers=bearer(member))

    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "row_integrity_failed"


def test_the_command_resumes_and_says_what_is_left(app, runtime, before_epochs):
    runner = cli_runner(app)

    stopped = runner.invoke(
        args=["keys", "migrate-epochs", "--batch", "2", "--max-batches", "1", "--json"]
    )
    assert stopped.exit_code == 0, stopped.output
    assert json.loads(stopped.stdout) == {
        "migrated": 2,
        "refused": [],
        "remaining": 3,
        "finished": False,
    }
    status = runner.invoke(args=["keys", "status"])
    assert "3 conversations wait for their key epoch record" in status.stdout
    resumed = runner.invoke(args=["keys", "migrate-epochs", "--json"])
    assert json.loads(resumed.stdout)["remaining"] == 0
