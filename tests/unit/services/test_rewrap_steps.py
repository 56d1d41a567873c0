"""The re-wrap queue step by step (``medchat.keys.member_rewrap``): what each request does to the
wraps, the counts, the order, the locks and the records, for one member among others.

The queue is what the database-writer review broke first (planted work items made the server
seal conversation keys to the attacker): ``tests/security/test_planted_rows.py`` walks every
tagged table, these pin what a drain does with genuine, superseded, planted and altered
requests. Each test names the mutants of the ``planted_rows`` mutation module it was written
for (docs/testing.md).
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from medchat.keys.member_rewrap import DrainResult, RewrapQueue
from medchat.keys.personal_keys import PersonalKeys
from medchat.models import PersonalKey, RewrapRequest
from tests.support.audit import audit_entries, audit_records
from tests.support.conversations import read_bodies, reply
from tests.support.rewrap import (
    drain,
    member_wraps,
    pending,
    reset,
    with_history,
)
from tests.support.sessions import sign_in
from tests.support.tampering import execute_sql


def requests(runtime) -> list[RewrapRequest]:
    with runtime.database.transaction() as session:
        found = list(session.scalars(select(RewrapRequest).order_by(RewrapRequest.id)))
        session.expunge_all()
    return found


def keys_of(runtime, member_id) -> int:
    """The member's personal keys, current and retired."""
    owned = select(func.count()).where(PersonalKey.account_id == member_id)
    with runtime.database.transaction() as session:
        return session.scalar(owned) or 0


def wrap_rows(runtime, member_id) -> dict[int, tuple[uuid.UUID, bytes]]:
    """The member's wraps by epoch: (row id, wrap bytes); one per epoch or the test fails."""
    rows: dict[int, tuple[uuid.UUID, bytes]] = {}
    for wrap in member_wraps(runtime, member_id):
        assert wrap.epoch not in rows, f"two member wraps of epoch {wrap.epoch}"
        rows[wrap.epoch] = (wrap.id, wrap.wrap)
    return rows


def test_drain_results_add_up_field_by_field():
    """``DrainResult.add`` (mutants 3-6: ``+=`` made ``=`` or ``-=``)."""
    total = DrainResult(rewrapped=1, superseded=2, skipped=3)
    total.add(DrainResult(rewrapped=10, superseded=20, skipped=30))
    assert (total.rewrapped, total.superseded, total.skipped) == (11, 22, 33)
    assert not DrainResult(skipped=4).progressed
    assert DrainResult(superseded=1).progressed


def test_requests_for_conversations_no_longer_live_are_dropped_as_superseded(runtime, clinician):
    """Sealed after the reset queued them: dropped, no member wrap (``_rewrap`` 10, 13;
    ``drain`` 53: two of them count two)."""
    member, started = with_history(runtime, 3)
    reset(runtime, member)
    for item in started[:2]:
        execute_sql(runtime, "UPDATE conversations SET status = 'sealed' WHERE id = :c", c=item.id)

    result = drain(runtime, clinician)

    assert (result.rewrapped, result.superseded, result.skipped) == (1, 2, 0)
    assert pending(runtime) == 0
    assert [w.conversation_id for w in member_wraps(runtime, member.id)] == [started[2].id]


def test_a_request_naming_another_member_than_the_conversations_is_dropped(runtime, clinician):
    """Even with the conversation's member's current key (``_rewrap`` 18): the recipient is
    taken from verified facts, and a request that disagrees with them is not acted on."""
    member, _ = with_history(runtime, 1)
    other, _ = with_history(runtime, 1)
    reset(runtime, member)
    with runtime.database.transaction() as session:  # written by the server, so tagged
        (request,) = session.scalars(select(RewrapRequest))
        request.member_id = other.id

    result = drain(runtime, clinician)

    assert (result.rewrapped, result.superseded) == (0, 1)
    assert member_wraps(runtime, member.id) == []


def test_a_reset_and_its_drain_leave_every_other_members_wraps_alone(runtime, clinician):
    """``enqueue`` 17 and ``_rewrap`` 36: the wraps deleted are this member's, of this
    conversation."""
    member, _ = with_history(runtime, 2)
    other, other_started = with_history(runtime, 2)
    before = {w.id: w.wrap for w in member_wraps(runtime, other.id)}
    assert len(before) == 2

    reset(runtime, member)
    assert {w.id: w.wrap for w in member_wraps(runtime, other.id)} == before
    assert drain(runtime, clinician).rewrapped == 2

    assert {w.id: w.wrap for w in member_wraps(runtime, other.id)} == before
    reader = sign_in(runtime, other).principal
    assert read_bodies(runtime, reader, other_started[1].id) == ["Body 1"]


def test_a_drain_adds_the_missing_epochs_and_keeps_the_wraps_already_there(
    runtime, team, clinician
):
    """After a first reset and its drain the conversation has epochs 1 and 2; a second reset
    queues both again, and a reply after it starts epoch 3, sealed to the member's new key at
    once. The drain adds epochs 1 and 2, each under its own number, and leaves epoch 3's wrap
    as it is (``_rewrap`` 38, 52, 54, 55: the wraps present; 65, 73: the epoch each wrap is
    sealed for)."""
    member, started = with_history(runtime, 1)
    reset(runtime, member)
    reply(runtime, clinician, started[0].id, "After the first reset")
    assert drain(runtime, clinician).rewrapped == 1
    assert sorted(wrap_rows(runtime, member.id)) == [1, 2]
    renewed = reset(runtime, member, "saffron-glacier-otter-29")
    reply(runtime, clinician, started[0].id, "After the second reset")
    (epoch_three,) = wrap_rows(runtime, member.id).items()
    assert epoch_three[0] == 3

    assert drain(runtime, clinician).rewrapped == 1

    rows = wrap_rows(runtime, member.id)
    assert sorted(rows) == [1, 2, 3]
    assert rows[3] == epoch_three[1]
    reader = sign_in(runtime, renewed).principal
    assert read_bodies(runtime, reader, started[0].id) == [
        "Body 0",
        "After the first reset",
        "After the second reset",
    ]


def test_a_members_retired_keys_go_with_their_last_request_and_no_one_elses(runtime, clinician):
    """``_rewrap`` 76-78: forgotten when the member has no request left, theirs only."""
    # Kept by both resets (nothing is sealed to them, so a reset would forget them at once):
    # as a race with a re-wrap would leave them.
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(PersonalKeys, "forget_retired", lambda *args, **kwargs: (0, None))
        member, _ = with_history(runtime, 2)
        reset(runtime, member)
        runtime.clock.advance(minutes=1)
        other, _ = with_history(runtime, 1)
        reset(runtime, other)
    assert (keys_of(runtime, member.id), keys_of(runtime, other.id)) == (2, 2)

    assert drain(runtime, clinician, limit=1).rewrapped == 1
    assert (keys_of(runtime, member.id), keys_of(runtime, other.id)) == (2, 2)

    # The member's last request, while the other member's waits.
    assert drain(runtime, clinician, limit=1).rewrapped == 1
    assert (keys_of(runtime, member.id), keys_of(runtime, other.id)) == (1, 2)

    assert drain(runtime, clinician, limit=1).rewrapped == 1
    assert (keys_of(runtime, member.id), keys_of(runtime, other.id)) == (1, 1)


def test_each_rewrap_is_recorded_whole(runtime, clinician):
    """``_rewrap`` 81-97: the entry's target type and details."""
    member, started = with_history(runtime, 1)
    reset(runtime, member)

    drain(runtime, clinician)

    assert audit_records(runtime, "conversation.rewrap") == [
        ("conversation", str(started[0].id), {"holder": "member"})
    ]
    (entry,) = audit_entries(runtime, "conversation.rewrap")
    assert entry.subject_id == member.id


def test_the_oldest_request_goes_first_whatever_its_id(runtime, clinician):
    """``drain`` 12 (ordered by id alone): the request with the larger id is the older."""
    member, _ = with_history(runtime, 2)
    reset(runtime, member)
    smaller, larger = requests(runtime)
    execute_sql(
        runtime,
        "UPDATE rewrap_requests SET created_at = :earlier WHERE id = :id",
        earlier=runtime.clock.now() - timedelta(hours=1),
        id=larger.id,
    )

    assert drain(runtime, clinician, limit=1).rewrapped == 1

    assert [r.id for r in requests(runtime)] == [smaller.id]


def test_requests_of_one_moment_go_in_the_order_of_their_ids(runtime, clinician):
    """``drain`` 11, 13: the tie-breaker, so that drains agree on what comes next. The server
    queues them again here with ids that descend in the order the rows are written: a drain
    that took rows in the order they come back would take the largest id first."""
    member, _ = with_history(runtime, 3)
    reset(runtime, member)
    ids = sorted((uuid.uuid4() for _ in range(3)), reverse=True)
    with runtime.database.transaction() as session:
        queued = list(session.scalars(select(RewrapRequest)))
        moment = queued[0].created_at
        fields = [(r.conversation_id, r.member_id, r.personal_key_id) for r in queued]
        for request in queued:
            session.delete(request)
        session.flush()
        for new_id, (conversation_id, member_id, key_id) in zip(ids, fields, strict=True):
            session.add(
                RewrapRequest(
                    id=new_id,
                    conversation_id=conversation_id,
                    member_id=member_id,
                    personal_key_id=key_id,
                    created_at=moment,
                )
            )
            session.flush()  # one INSERT at a time, largest id first

    assert drain(runtime, clinician, limit=1).rewrapped == 1

    assert [r.id for r in requests(runtime)] == sorted(ids)[1:]


def test_pending_counts_one_members_requests_or_everyones(runtime, team):
    """``pending`` 6, 7."""
    member, _ = with_history(runtime, 2)
    other, _ = with_history(runtime, 1)
    reset(runtime, member)
    reset(runtime, other)
    with runtime.database.transaction() as session:
        queue = RewrapQueue(session, runtime)
        assert (queue.pending(member.id), queue.pending(other.id), queue.pending()) == (2, 1, 3)


def test_planted_requests_are_dropped_and_the_genuine_ones_after_them_go_on(runtime, clinician):
    """Copies of the member's request naming another member's conversations, under new ids
    (the tag names the old id and conversation): refused on load, dropped, counted one each,
    and the drain goes on (``drain`` 27-30)."""
    member, started = with_history(runtime, 2)
    victim, victims = with_history(runtime, 2)
    reset(runtime, member)
    genuine = requests(runtime)
    victim_wraps = {w.id: w.wrap for w in member_wraps(runtime, victim.id)}
    for target in victims:
        execute_sql(
            runtime,
            "INSERT INTO rewrap_requests "
            "(id, conversation_id, member_id, personal_key_id, created_at, row_tag) "
            "SELECT :new, :target, member_id, personal_key_id, :early, row_tag "
            "FROM rewrap_requests WHERE id = :source",
            new=uuid.uuid4(),
            target=target.id,
            early=runtime.clock.now() - timedelta(hours=1),
            source=genuine[0].id,
        )

    result = drain(runtime, clinician)

    assert (result.rewrapped, result.superseded, result.skipped) == (2, 0, 2)
    assert requests(runtime) == []
    assert {w.conversation_id for w in member_wraps(runtime, member.id)} == {s.id for s in started}
    assert {w.id: w.wrap for w in member_wraps(runtime, victim.id)} == victim_wraps


def test_altered_conversations_stay_queued_each_counted_and_logged_and_the_rest_go_on(
    runtime, clinician, caplog
):
    """The altered ones first in the queue (``drain`` 38, 43: the log line; 46: counted one
    each; 49: the drain goes on after them)."""
    member, started = with_history(runtime, 2)
    reset(runtime, member)
    runtime.clock.advance(minutes=1)
    other, other_started = with_history(runtime, 1)
    reset(runtime, other)
    for item in started:
        execute_sql(
            runtime,
            "UPDATE conversations SET key_commitment = :c WHERE id = :id",
            c=bytes(32),
            id=item.id,
        )

    with caplog.at_level(logging.ERROR, logger="medchat.rewrap"):
        result = drain(runtime, clinician)

    assert (result.rewrapped, result.skipped) == (1, 2)
    assert sorted(r.getMessage() for r in caplog.records if r.name == "medchat.rewrap") == sorted(
        f"re-wrap of conversation {item.id} left queued: KeyIntegrityFailure" for item in started
    )
    assert [w.conversation_id for w in member_wraps(runtime, other.id)] == [other_started[0].id]
    assert {r.conversation_id for r in requests(runtime)} == {s.id for s in started}


def test_a_quiet_drain_that_fails_says_so_in_the_log(runtime, clinician, monkeypatch, caplog):
    """``drain_quietly`` 7: the line an operator searches for."""
    member, _ = with_history(runtime, 1)
    reset(runtime, member)

    def broken(self, actor, limit):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(RewrapQueue, "drain", broken)
    with caplog.at_level(logging.ERROR), runtime.database.transaction() as session:
        assert RewrapQueue(session, runtime).drain_quietly(clinician, 10) is None

    assert [r.getMessage() for r in caplog.records if r.name == "medchat.rewrap"] == [
        "the re-wrap drain failed; the clinician's request is unaffected"
    ]


@pytest.mark.postgresql_only
def test_a_drain_passes_over_the_requests_another_drain_holds(runtime, clinician):
    """``FOR UPDATE SKIP LOCKED`` (``drain`` 15-17): a request another transaction holds is
    not waited for; the drain takes the others at once."""
    if not runtime.database.is_postgresql:
        pytest.skip("row locks (FOR UPDATE SKIP LOCKED) are PostgreSQL's; SQLite serialises")
    member, _ = with_history(runtime, 2)
    reset(runtime, member)
    held, *free = requests(runtime)
    holding, release, errors = threading.Event(), threading.Event(), []

    def hold() -> None:
        try:
            with runtime.database.transaction() as session:
                session.execute(
                    text("SELECT id FROM rewrap_requests WHERE id = :id FOR UPDATE"),
                    {"id": held.id},
                )
                holding.set()
                assert release.wait(20)
        except BaseException as exc:
            errors.append(exc)
            holding.set()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(20)
        with runtime.database.transaction() as session:
            # A drain that waited for the held row would fail here instead.
            session.execute(text("SET LOCAL lock_timeout = '2s'"))
            result = RewrapQueue(session, runtime).drain(clinician, 10)
    finally:
        release.set()
        holder.join(30)

    assert errors == []
    assert (result.rewrapped, result.skipped) == (1, 0)
    assert [r.id for r in requests(runtime)] == [held.id]
    assert {w.conversation_id for w in member_wraps(runtime, member.id)} == {
        r.conversation_id for r in free
    }
