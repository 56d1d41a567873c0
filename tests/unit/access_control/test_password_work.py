"""The bound on password work (issue 15): slots, a short queue, a clean refusal, no oracle.

Real threads and real hashing (at test costs); a "slot held" is a piece of work that blocks on
an event the test sets, so every state of the gate is reached on purpose, never by timing luck.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from access_control.errors import DependencyDown, PasswordWorkBusy
from access_control.password_kdf import Password, ScryptParams
from access_control.password_work import DEPENDENCY, RETRY_AFTER_SECONDS, PasswordWork
from access_control.passwords import PasswordHasher
from tests.support.password_work import held

FAST = ScryptParams(log2_n=10)
STRONG = "quokka-harbor-lantern-42"


def test_run_returns_what_the_work_returns_and_raises_what_it_raises():
    work = PasswordWork(1, 1.0)
    assert work.run(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(KeyError):
        work.run(lambda: {}["missing"])


def test_slots_and_queue_full_refuses_at_once_with_a_retryable_503():
    work = PasswordWork(1, 10.0)
    with held(work, 2):  # one running, one waiting (for up to 10 s)
        started = time.monotonic()
        with pytest.raises(PasswordWorkBusy) as refused:
            work.run(lambda: "never")
        assert time.monotonic() - started < 1.0  # not after the 10 s wait: at once
    error = refused.value
    assert isinstance(error, DependencyDown)
    assert (error.status, error.code) == (503, "dependency_down")
    assert error.details == {"dependency": DEPENDENCY}
    assert error.headers == {"Retry-After": str(RETRY_AFTER_SECONDS)}
    assert work.run(lambda: "free again") == "free again"


def test_a_queued_request_waits_at_most_the_wait_then_is_refused():
    work = PasswordWork(1, 0.2)
    with held(work, 1):
        started = time.monotonic()
        with pytest.raises(PasswordWorkBusy):
            work.run(lambda: "never")
        waited = time.monotonic() - started
    assert 0.15 <= waited < 5


def test_a_queued_request_runs_once_a_slot_frees_within_the_wait():
    work = PasswordWork(1, 10.0)
    release = threading.Event()
    entered = threading.Event()

    def first() -> None:
        entered.set()
        release.wait(10)

    runner = threading.Thread(target=work.run, args=(first,))
    runner.start()
    assert entered.wait(10)
    threading.Timer(0.1, release.set).start()
    assert work.run(lambda: "second") == "second"
    runner.join(10)


def test_work_inside_a_slot_runs_inline_and_does_not_deadlock_on_one_slot():
    work = PasswordWork(1, 0.0)
    assert work.run(lambda: work.run(lambda: "inner")) == "inner"


def test_the_work_runs_on_a_thread_of_lower_priority():
    if not sys.platform.startswith("linux"):
        pytest.skip("per-thread nice values are Linux's")
    work = PasswordWork(1, 1.0)
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    theirs = work.run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    assert theirs == min(19, ours + 10)
    # The caller's own thread keeps its priority (it goes on serving requests).
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == ours


def test_a_hasher_runs_each_check_through_its_gate_known_or_unknown_account():
    work = PasswordWork(1, 1.0)
    admitted: list[str] = []
    real_run = work.run

    def counting(fn, *args):  # type: ignore[no-untyped-def]
        if not getattr(work._inside, "active", False):  # a call that must pass the gate
            admitted.append(getattr(fn, "__name__", "?"))
        return real_run(fn, *args)

    work.run = counting  # type: ignore[method-assign]
    hasher = PasswordHasher(4, FAST, work)
    stored = hasher.hash(STRONG)
    admitted.clear()
    assert hasher.verify(STRONG, stored) is True
    assert hasher.verify("wrong-password-entirely", stored) is False
    assert hasher.verify(STRONG, None) is False  # no such account: the dummy check
    # One admission per check: the scrypt inside each ran inline on the check's slot.
    assert admitted == ["_verify", "_verify", "_verify"]


def test_a_full_gate_refuses_an_unknown_and_a_known_account_alike():
    work = PasswordWork(1, 0.0)
    hasher = PasswordHasher(4, FAST, work)
    stored = hasher.hash(STRONG)
    refusals = []
    with held(work, 1):
        for hashed in (stored, None):
            with pytest.raises(PasswordWorkBusy) as refused:
                hasher.verify(STRONG, hashed)
            refusals.append((refused.value.details, refused.value.headers, str(refused.value)))
    assert refusals[0] == refusals[1]


def test_a_later_scrypt_run_of_a_checked_password_goes_through_the_same_gate():
    work = PasswordWork(1, 0.0)
    hasher = PasswordHasher(4, FAST, work)
    typed = Password(STRONG)
    hasher.verify(typed, hasher.hash(STRONG))
    assert typed.runner is not None
    with held(work, 1), pytest.raises(PasswordWorkBusy):
        typed.stretched(b"\x01" * 16, FAST)  # a key sealed with another salt: new work
    assert typed.stretched(b"\x01" * 16, FAST).salt == b"\x01" * 16


def test_a_reservation_holds_one_slot_for_the_work_done_under_it():
    work = PasswordWork(1, 0.0)
    with work.reserved():
        # The slot is this thread's: its work runs (on a thread of its own) without a second
        # slot, nested reservations are the same one, and nobody else gets in.
        assert work.run(lambda: "first") == "first"
        with work.reserved():
            assert work.run(lambda: "second") == "second"
        outsider: list[object] = []
        thread = threading.Thread(target=lambda: outsider.append(_try(work)))
        thread.start()
        thread.join(10)
        assert isinstance(outsider[0], PasswordWorkBusy)
    assert work.run(lambda: "released") == "released"


def test_a_reservation_is_refused_like_work_when_the_gate_is_full():
    work = PasswordWork(1, 0.0)
    with held(work, 1), pytest.raises(PasswordWorkBusy), work.reserved():
        pytest.fail("reserved a slot of a full gate")


def _try(work: PasswordWork) -> object:
    try:
        return work.run(lambda: "got in")
    except PasswordWorkBusy as exc:
        return exc


@pytest.mark.parametrize("slots", [0, -1])
def test_a_gate_needs_a_slot(slots):
    with pytest.raises(ValueError):
        PasswordWork(slots, 1.0)


@pytest.mark.parametrize(
    ("slots", "wait", "message"),
    [
        (0, 1.0, "password work needs at least one slot"),
        (1, -0.1, "the wait for a slot cannot be negative"),
    ],
)
def test_a_misconfigured_gate_is_refused_by_name(slots, wait, message):
    with pytest.raises(ValueError) as refused:
        PasswordWork(slots, wait)
    assert str(refused.value) == message


def test_two_slots_admit_two_running_and_two_waiting_and_refuse_the_fifth():
    work = PasswordWork(2, 5.0)
    with held(work, 4):
        assert isinstance(_try(work), PasswordWorkBusy)


def test_the_work_runs_on_a_named_daemon_thread():
    work = PasswordWork(1, 1.0)
    name, daemon = work.run(
        lambda: (threading.current_thread().name, threading.current_thread().daemon)
    )
    assert (name, daemon) == ("password-work", True)


def test_a_gate_without_lower_priority_keeps_the_callers_priority():
    if not sys.platform.startswith("linux"):
        pytest.skip("per-thread nice values are Linux's")
    work = PasswordWork(1, 1.0, lower_priority=False)
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert work.run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())) == ours


def test_a_system_that_refuses_the_lower_priority_still_runs_the_work(monkeypatch):
    def refused(*args):
        raise PermissionError("not allowed here")

    monkeypatch.setattr(os, "setpriority", refused)
    assert PasswordWork(1, 1.0).run(lambda: "done") == "done"


@pytest.mark.parametrize("slots", [1, 2])
def test_full_says_so_only_when_every_slot_and_queue_place_is_taken(slots):
    work = PasswordWork(slots, 10.0)
    assert not work.full()
    with held(work, slots):  # every slot running, the queue empty
        assert not work.full()
    with held(work, 2 * slots - 1):  # one queue place left
        assert not work.full()
    with held(work, 2 * slots):
        assert work.full()
        assert isinstance(_try(work), PasswordWorkBusy)
        assert work.full()  # a refusal takes no place and frees none
    assert not work.full()


def test_a_wait_that_ran_out_gives_its_place_back():
    work = PasswordWork(1, 0.1)
    with held(work, 1):
        assert isinstance(_try(work), PasswordWorkBusy)  # queued, then out of time
        assert not work.full()
        with pytest.raises(PasswordWorkBusy), work.reserved():
            pass
        assert not work.full()
    assert not work.full()


def test_work_that_raised_gives_its_place_back():
    work = PasswordWork(1, 1.0)
    for _ in range(3):
        with pytest.raises(KeyError):
            work.run(lambda: {}["missing"])
    assert not work.full()
    with held(work, 2):
        assert work.full()
