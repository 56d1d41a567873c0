"""The row check read three ways answers the same: ``load`` (an ORM object), ``check`` (columns
through the driver, for a page read and a send) and ``check`` answered from the rows read with
the caller's token (``medchat.services.request_checks``, on PostgreSQL; on SQLite it reads
them itself).

``check`` is ``load``'s statement as columns: one rule (``ConversationAccess._admit``), two
reads of the row. So every actor against every state of a conversation gets the same answer
from both (the same refusal, or the same row and the same keys; locked, also the same consent
and the same facts a seal decides from), and an epoch row altered in
SQL is refused by ``check`` as the ORM refuses it when ``load`` reads it: 409
``row_integrity_failed``, audited. ``check`` verifies the epoch rows only once the caller may
see the conversation, so someone else's is still a plain 404.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat.errors import MedchatError, RowIntegrityFailure
from medchat.models import (
    RECORD_COLUMNS,
    AuditEntry,
    ConversationKeyEpoch,
    ConversationRecord,
)
from medchat.models.integrity import integrity_of
from medchat.services.consent import ConsentService
from medchat.services.conversation_access import ConversationAccess
from medchat.services.request_checks import token_and_row_check
from medchat.services.restrictions import RestrictionService
from medchat.services.row_check_prefetch import PREFETCHED
from tests.support.accounts import make_member, make_staff
from tests.support.conversations import start_conversation
from tests.support.messaging import care_team
from tests.support.sessions import attached, sign_in
from tests.support.tampering import execute_sql, flipped

_EPOCH_TAGGED = integrity_of(ConversationKeyEpoch).columns  # type: ignore[union-attr]


def _answer(
    runtime: Any, read: str, actor: Any, conversation_id: uuid.UUID, *, for_update: bool = False
) -> Any:
    """What ``read`` ("load", "check" or "combined") gives ``actor``: the refusal's name, or
    the row's record columns, the DEKs the actor's session opens with what was read and each
    epoch row's tagged columns; locked (a write's read), also whether the member consents and
    what a seal decides from."""
    with runtime.database.transaction() as session:
        access = ConversationAccess(session, runtime)
        try:
            if read == "load":
                row = access.load(
                    actor, conversation_id, for_update=for_update, with_consent=for_update
                )
            else:
                if read == "combined":
                    token = actor._presented  # the access token the principal was loaded from
                    now = runtime.clock.now()
                    token_and_row_check(session, now, token, conversation_id, for_update=for_update)
                row = access.check(actor, conversation_id, for_update=for_update)
                assert PREFETCHED not in session.info  # none kept, or taken
            deks = access.open_key(actor, row)
        except MedchatError as error:
            return type(error).__name__
        return (
            {name: getattr(row, name) for name in RECORD_COLUMNS},
            {epoch: deks.of(epoch) for epoch in deks.epochs()},
            {
                epoch: {name: getattr(epoch_row, name) for name in _EPOCH_TAGGED}
                for epoch, epoch_row in deks.rows.items()
            },
            access.consent_known(row),
            access._facts.get(row.id),
        )


@pytest.fixture
def people(runtime):
    team = care_team(runtime)
    return {
        "owner": sign_in(runtime, make_member(runtime)).principal,
        "other member": sign_in(runtime, make_member(runtime)).principal,
        "doctor": sign_in(runtime, team.clinician).principal,
        "doctor without the key": sign_in(runtime, make_staff(runtime, Role.CLINICIAN)).principal,
        "admin": sign_in(runtime, make_staff(runtime, Role.ADMIN)).principal,
        "compliance": sign_in(runtime, team.compliance).principal,
    }


STATES = (
    "open",
    "answered",
    "closed",
    "sealed",
    "answered, restricted",
    "open, restricted",
    "open, consents",
)


def _put_in_state(runtime: Any, conversation_id: uuid.UUID, owner: Any, state: str) -> None:
    status, _, also = state.partition(", ")
    execute_sql(
        runtime, "UPDATE conversations SET status = :s WHERE id = :id", s=status, id=conversation_id
    )
    with runtime.database.transaction() as session:
        if also == "restricted":
            RestrictionService(session, runtime).restrict(owner.id)
        if also == "consents":
            ConsentService(session, runtime).grant(attached(owner, session), "2026-01")


@pytest.mark.parametrize("for_update", [False, True], ids=["read", "locked"])
@pytest.mark.parametrize("state", STATES)
def test_every_actor_gets_the_same_answer_from_both_reads(runtime, people, state, for_update):
    owner = people["owner"]
    started = start_conversation(runtime, owner, subject="Headache", bodies=["Since Monday."])
    _put_in_state(runtime, started.id, owner, state)
    answers = {}
    for name, actor in people.items():
        loaded = _answer(runtime, "load", actor, started.id, for_update=for_update)
        checked = _answer(runtime, "check", actor, started.id, for_update=for_update)
        combined = _answer(runtime, "combined", actor, started.id, for_update=for_update)
        assert checked == loaded, name
        assert combined == loaded, name
        answers[name] = checked
    # Not one answer for everyone: the matrix tells the actors and the states apart.
    assert answers["other member"] == "NotFound"
    assert answers["admin"] == ("NotFound" if state == "sealed" else "Forbidden")
    assert answers["doctor without the key"] == "RoleKeyRequired"
    visible = state != "sealed"
    assert isinstance(answers["owner"], tuple) == visible
    assert isinstance(answers["doctor"], tuple) == (visible and state != "answered, restricted")
    if visible:
        record, deks, rows, consents, facts = answers["owner"]
        assert record["id"] == started.id and deks[1] == started.dek and 1 in rows
        assert record["message_count"] == 1
        # What a write reads besides the row, and only a write.
        assert consents == (state.endswith("consents") if for_update else None)
        assert (facts is not None) == for_update
        if for_update:
            assert facts.member_key_id == rows[1]["member_key_id"]


def test_an_unknown_conversation_is_not_found_by_either(runtime, people):
    for actor in people.values():
        for read in ("load", "check", "combined"):
            answer = _answer(runtime, read, actor, uuid.uuid4())
            assert answer in ("NotFound", "RoleKeyRequired")


def test_check_gives_a_record_no_session_tracks(runtime, people):
    started = start_conversation(runtime, people["owner"], subject=None, bodies=["Hello."])
    with runtime.database.transaction() as session:
        record = ConversationAccess(session, runtime).check(people["owner"], started.id)
        assert type(record) is ConversationRecord
        assert not session.new and not session.dirty and not list(session.identity_map)
        with pytest.raises(AttributeError):
            record.status = "closed"  # type: ignore[misc]


#: Every tagged column and the tag, but those the join finds the row by: altered, those leave
#: the wrap without its epoch row, which ``epochs.epoch_commitment`` answers (epoch 1 falls back
#: to the conversation row's commitment, under its key-set tag; a later epoch is refused).
_ALTERABLE = [c for c in (*_EPOCH_TAGGED, "row_tag") if c not in ("id", "conversation_id", "epoch")]


@pytest.mark.parametrize("for_update", [False, True], ids=["read", "locked"])
@pytest.mark.parametrize("column", _ALTERABLE)
def test_an_altered_epoch_row_is_refused_by_the_check(runtime, people, column, for_update):
    owner = people["owner"]
    started = start_conversation(runtime, owner, subject=None, bodies=["Hello."])
    with runtime.database.transaction() as session:
        genuine = session.scalars(
            select(ConversationKeyEpoch).where(ConversationKeyEpoch.conversation_id == started.id)
        ).one()
        original = getattr(genuine, column)
    altered = {
        bytes: flipped,
        int: lambda v: v + 10,
    }.get(type(original), lambda v: v.replace(year=v.year + 1))(original)
    if original is None:
        altered = b"\x01" * 8
    execute_sql(
        runtime,
        f"UPDATE conversation_key_epochs SET {column} = :v WHERE id = :id",
        v=altered,
        id=genuine.id,
    )

    def refused() -> int:
        with runtime.database.transaction() as session:
            ids = session.scalars(
                select(AuditEntry.id).where(AuditEntry.action == "integrity.row_refused")
            )
            return len(ids.all())

    before = refused()
    for actor, combined in itertools.product(("owner", "doctor"), (False, True)):
        with pytest.raises(RowIntegrityFailure), runtime.database.transaction() as session:
            if combined:  # the row check read with the token (PostgreSQL)
                token, now = people[actor]._presented, runtime.clock.now()
                token_and_row_check(session, now, token, started.id, for_update=for_update)
            access = ConversationAccess(session, runtime)
            access.check(people[actor], started.id, for_update=for_update)
    assert refused() > before
    # Someone who may not see the conversation learns nothing more than before.
    other = _answer(runtime, "check", people["other member"], started.id, for_update=for_update)
    assert other == "NotFound"
    execute_sql(
        runtime,
        f"UPDATE conversation_key_epochs SET {column} = :v WHERE id = :id",
        v=original,
        id=genuine.id,
    )
    assert isinstance(_answer(runtime, "check", owner, started.id), tuple)
