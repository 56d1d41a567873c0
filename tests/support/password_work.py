"""Counting the expensive password work (scrypt runs, bcrypt operations), and filling its gate.

Equal work is how the tests show equal timing ("no such user", "wrong password", "old hash"
and a taken address cost what the other branch costs), without measuring time.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import bcrypt

from access_control import password_kdf
from access_control.errors import PasswordWorkBusy
from access_control.password_work import PasswordWork


def count_password_work(monkeypatch: Any) -> Counter[str]:
    """Count scrypt runs and bcrypt operations from now on in this test."""
    work: Counter[str] = Counter()
    real_derive, real_check, real_hash = password_kdf._derive, bcrypt.checkpw, bcrypt.hashpw

    def derive(*args: Any) -> Any:
        work["scrypt"] += 1
        return real_derive(*args)

    def check(*args: Any) -> Any:
        work["bcrypt"] += 1
        return real_check(*args)

    def hashpw(*args: Any) -> Any:
        work["bcrypt"] += 1
        return real_hash(*args)

    monkeypatch.setattr(password_kdf, "_derive", derive)
    monkeypatch.setattr(bcrypt, "checkpw", check)
    monkeypatch.setattr(bcrypt, "hashpw", hashpw)
    return work


@contextmanager
def held(work: PasswordWork, count: int) -> Iterator[None]:
    """``count`` pieces of work inside the gate (running, then queued) until the block ends."""
    release = threading.Event()
    entered = threading.Semaphore(0)
    outcomes: list[object] = []

    def blocking() -> None:
        entered.release()
        release.wait(30)

    def submit() -> None:
        try:
            work.run(blocking)
            outcomes.append("ran")
        except PasswordWorkBusy as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(count)]
    for thread in threads:
        thread.start()
    running = min(count, work.slots)
    for _ in range(running):
        assert entered.acquire(timeout=10), "a slot was not taken"
    time.sleep(0.05)  # the queued ones reach their wait
    try:
        yield
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=30)
    assert outcomes == ["ran"] * count, outcomes


def gate_full(work: PasswordWork) -> AbstractContextManager[None]:
    """Every slot running and every queue place taken, until the block ends."""
    return held(work, 2 * work.slots)
