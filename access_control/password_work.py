"""A bound on the password hashing one process does at once, so a sign-in flood starves no one.

Threat: checking a password costs one scrypt run (2**17, 128 MiB) and one bcrypt at cost 12,
about 0.6 s of CPU, on purpose (``access_control.passwords``). Anyone can ask for it: a flood of
sign-ins with made-up e-mail addresses (each a new account key, so no failure budget stops it)
from many client addresses (so no per-address limit does) would otherwise put every CPU and
every worker thread into hashing, and members reading their messages would wait behind it.

So every piece of password work of a process goes through one ``PasswordWork``:

- **Slots.** At most ``slots`` hashes run at once (``MEDCHAT_PASSWORD_WORK_SLOTS``, 1 by
  default: gunicorn runs about one worker process per core, each with its own slots), each
  on a thread of its own. On Linux that thread runs at a lower CPU priority (``nice`` +10):
  when readers and hashing want the same core, the readers get it.
  bcrypt and scrypt release the GIL, so the hashing does not hold the process's other threads.
- **A short queue, then a clean refusal.** At most ``slots`` more requests wait, each for at
  most ``wait_seconds``; anything beyond answers at once with ``PasswordWorkBusy`` (503
  ``dependency_down``, ``details.dependency`` ``"password_work"``, ``Retry-After``). So at
  most ``2 * slots`` of a worker's threads are ever tied up in password work: with gunicorn's
  4 threads and one slot, two threads always remain for readers.
- **No oracle.** Admission comes before any password is looked at and is the same for every
  caller: an unknown account's dummy check (``PasswordHasher.verify`` with no hash) passes
  through the same gate as a real one, so a refusal or a wait tells nothing about who exists.

Work submitted from inside a slot (a scrypt run inside a hash check) runs inline: one
request holds one slot for the whole check, never two, and cannot deadlock on itself.

``full()`` says, without taking anything, that the slots and the queue are all taken: the web
layer turns a sign-in away on that before the rest of the request is handled
(``medchat.web.password_gate``), since under a flood a refusal is the common answer and what
it costs is what the flood takes from the readers.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

from access_control.errors import PasswordWorkBusy

T = TypeVar("T")

#: The name ``details.dependency`` carries in the 503.
DEPENDENCY: Final = "password_work"
#: Seconds a refused client should wait: a slot frees within one hash (well under a second).
RETRY_AFTER_SECONDS: Final = 2
#: How much lower the hashing threads run (Linux ``nice``; raising it needs no privilege).
LOWER_PRIORITY: Final = 10


class PasswordWork:
    """Runs password hashing on at most ``slots`` low-priority threads, refusing beyond a
    short queue.

    ``run(fn, *args)`` returns ``fn(*args)``, computed on a thread of its own, or raises
    ``PasswordWorkBusy`` (before calling ``fn``) when the slots and the queue are full or no
    slot freed within ``wait_seconds``. Exceptions of ``fn`` propagate unchanged. A thread per
    piece of work (started in microseconds, against a hash's half second) keeps nothing alive
    between sign-ins: no pool to carry across gunicorn's fork, none to shut down.
    """

    def __init__(self, slots: int, wait_seconds: float, *, lower_priority: bool = True) -> None:
        if slots < 1:
            raise ValueError("password work needs at least one slot")
        if wait_seconds < 0:
            raise ValueError("the wait for a slot cannot be negative")
        self.slots = slots
        self.wait_seconds = wait_seconds
        self._places = 2 * slots  # running + waiting
        self._admitted = 0
        self._admission = threading.Lock()
        self._running = threading.BoundedSemaphore(slots)
        self._inside = threading.local()
        self._lower_priority = lower_priority

    def __repr__(self) -> str:
        return f"PasswordWork(slots={self.slots}, wait_seconds={self.wait_seconds})"

    def run(self, fn: Callable[..., T], *args: object) -> T:
        if getattr(self._inside, "active", False):
            return fn(*args)  # already on a slot: the scrypt run inside a hash check
        if getattr(self._inside, "reserved", False):
            return self._on_own_thread(fn, args)  # this request holds a slot already
        with self._slot():
            return self._on_own_thread(fn, args)

    def full(self) -> bool:
        """Every slot and every queue place taken: work asked for now would be refused.

        A peek, not a reservation: the answer may be stale by the time it is read (a place
        frees, or the last one is taken), and ``run`` and ``reserved`` decide for themselves.
        """
        return self._admitted >= self._places

    @contextmanager
    def reserved(self) -> Iterator[None]:
        """Hold a slot for this thread across a whole sign-in check, from before its database
        lookup: a refusal then costs no query, so a flood is turned away before the database.
        ``run`` on the same thread meanwhile uses this slot. Raises ``PasswordWorkBusy``."""
        if getattr(self._inside, "reserved", False) or getattr(self._inside, "active", False):
            yield
            return
        with self._slot():
            self._inside.reserved = True
            try:
                yield
            finally:
                self._inside.reserved = False

    @contextmanager
    def _slot(self) -> Iterator[None]:
        with self._admission:
            if self._admitted >= self._places:
                raise self._busy()
            self._admitted += 1
        try:
            if not self._running.acquire(timeout=self.wait_seconds):
                raise self._busy()
            try:
                yield
            finally:
                self._running.release()
        finally:
            with self._admission:
                self._admitted -= 1

    def _busy(self) -> PasswordWorkBusy:
        return PasswordWorkBusy(
            details={"dependency": DEPENDENCY},
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    def _on_own_thread(self, fn: Callable[..., T], args: tuple[object, ...]) -> T:
        outcome: list[Any] = []

        def work() -> None:
            self._inside.active = True
            if self._lower_priority and sys.platform.startswith("linux"):
                # Per thread on Linux (a thread is a task with its own nice value). Best
                # effort: a sandbox that refuses it still gets the bound on slots.
                with contextlib.suppress(OSError):
                    me = threading.get_native_id()
                    niceness = os.getpriority(os.PRIO_PROCESS, me)
                    os.setpriority(os.PRIO_PROCESS, me, min(19, niceness + LOWER_PRIORITY))
            try:
                outcome.append((True, fn(*args)))
            except BaseException as exc:  # handed to the caller's thread below
                outcome.append((False, exc))

        thread = threading.Thread(target=work, name="password-work", daemon=True)
        thread.start()
        thread.join()
        done, value = outcome[0]
        if not done:
            raise value
        return value  # type: ignore[no-any-return]
