"""Failure budgets of sign-in, counted where the account is known (issue 12, items 2 and 3).

A per-account lockout that anyone can fill is a denial-of-service tool: five wrong passwords
from anywhere used to keep the real clinician out for fifteen minutes. So failures are counted
three ways, each in fixed windows that grow (15 minutes, an hour, a day):

- **per account and client address** (``PAIR_FAILURES``), hard: past it, that address gets
  429 for that account before any work is done. A guesser locks out only themselves.
- **per account, from any address** (``ACCOUNT_FAILURES``), slower and soft: past it the
  account answers 429 to every sign-in except one that brings the right password *and* a
  valid second factor together (from a staff network, for staff: a password from outside is
  a wrong one). The answer is 429 whichever of the two was wrong, so a locked account is no
  password oracle; an account without a second factor waits for the window to pass (a member
  can still reset by mail).
- **second-factor failures per account** (``CODE_FAILURES``), hard, one budget for the API,
  the console, the reset confirmation and every step-up: whoever gets a code wrong knew the
  password, so past it every sign-in of the account answers 429 until the window passes.

The account is named by its e-mail's blind index, so unknown and known addresses are counted
alike and no address or name reaches the storage. The storage is the rate limiter's
(``MEDCHAT_RATELIMIT_STORAGE_URI``: ``memory://`` for one process, ``redis://`` shared), under
its key prefix; the windows run on the storage's clock, like Flask-Limiter's.

While that storage is unreachable (Redis down) the budgets are counted in this process's
memory, with a warning, exactly as Flask-Limiter's own limits are (``throttling.init_app``):
weaker across processes for a while, but sign-in keeps answering and is never left unlimited.
The storage is asked again every ``RECHECK_SECONDS`` and used as soon as it answers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TypeVar

from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from access_control.errors import RateLimited
from access_control.networks import rate_limit_address

#: Failed passwords against one account from one client address.
PAIR_FAILURES = "5 per 15 minutes; 10 per hour; 20 per day"
#: Failed passwords against one account from every address together.
ACCOUNT_FAILURES = "20 per 15 minutes; 50 per hour; 100 per day"
#: Wrong second-factor codes (TOTP or recovery) for one account, wherever they were given.
CODE_FAILURES = "5 per 15 minutes; 10 per hour; 20 per day"


#: How often a storage found unreachable is asked again (seconds).
RECHECK_SECONDS = 5.0

log = logging.getLogger("medchat.sign_in_limits")
T = TypeVar("T")


class _Counter:
    """The shared storage's limiter, or this process's memory while the storage is down."""

    def __init__(self, storage_uri: str, monotonic: Callable[[], float] = time.monotonic) -> None:
        # wrap_exceptions: any outage of any storage surfaces as one type, StorageError.
        self.storage = storage_from_string(storage_uri, wrap_exceptions=True)
        self._monotonic = monotonic
        self._shared = FixedWindowRateLimiter(self.storage)
        self._local = FixedWindowRateLimiter(MemoryStorage())
        self._down = False
        self._next_check = 0.0

    def run(self, action: Callable[[FixedWindowRateLimiter], T]) -> T:
        if self._down:
            now = self._monotonic()
            if now < self._next_check:
                return action(self._local)
            self._next_check = now + RECHECK_SECONDS
            if not self.storage.check():
                return action(self._local)
            log.warning("rate limit storage answers again: sign-in budgets are shared again")
            self._down = False
        try:
            return action(self._shared)
        except StorageError as error:
            log.warning(
                "rate limit storage unreachable (%s): sign-in budgets counted per process "
                "until it answers",
                type(error.storage_error).__name__,
            )
            self._down = True
            self._next_check = self._monotonic() + RECHECK_SECONDS
            return action(self._local)


class SignInLimits:
    """The three budgets over one limits storage; every method is a single storage round."""

    def __init__(
        self,
        storage_uri: str,
        key_prefix: str,
        on_failure: Callable[[str, list[str]], None] | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``monotonic`` paces the re-checks of a storage found down (a test's own clock)."""
        self._counter = _Counter(storage_uri, monotonic)
        self._prefix = key_prefix
        #: Told of each failure: the factor and the budgets it spent (each one a lockout now);
        #: the service counts them in its metrics (``medchat.observability.metrics``).
        self._on_failure = on_failure or (lambda factor, spent: None)
        self._pair = parse_many(PAIR_FAILURES)
        self._account = parse_many(ACCOUNT_FAILURES)
        self._code = parse_many(CODE_FAILURES)

    def __repr__(self) -> str:
        return f"SignInLimits(prefix={self._prefix!r})"

    @staticmethod
    def account_key(email_index: bytes) -> str:
        """The budget name of an account: its e-mail's blind index, never the address."""
        return email_index.hex()

    # -- reading -------------------------------------------------------------------------

    def _refusal(self, *budgets: tuple[list[RateLimitItem], tuple[str, ...]]) -> RateLimited | None:
        """A 429 with ``Retry-After`` (the longest wait) if any budget is spent, else None."""

        def waits_in(limiter: FixedWindowRateLimiter) -> list[int]:
            now, waits = time.time(), []
            for items, ids in budgets:
                for item in items:
                    if not limiter.test(item, self._prefix, *ids):
                        stats = limiter.get_window_stats(item, self._prefix, *ids)
                        waits.append(math.ceil(stats.reset_time - now))
            return waits

        waits = self._counter.run(waits_in)
        if not waits:
            return None
        return RateLimited(headers={"Retry-After": str(max(1, *waits))})

    def refusal(self, account: str, address: str) -> RateLimited | None:
        """The 429 for a sign-in refused before any work, or None.

        Refused: this address spent its budget for this account, or the account spent its
        second-factor budget (whoever guesses codes holds the password: nobody gets in).
        """
        return self._refusal(
            (self._pair, ("sign-in-pair", account, rate_limit_address(address))),
            (self._code, ("sign-in-code", account)),
        )

    def code_refusal(self, account: str) -> RateLimited | None:
        """The 429 when the account spent its second-factor budget, or None."""
        return self._refusal((self._code, ("sign-in-code", account)))

    def locked(self, account: str) -> RateLimited | None:
        """The 429 of an account past its slower, every-address budget, or None (open)."""
        return self._refusal((self._account, ("sign-in-account", account)))

    # -- counting ------------------------------------------------------------------------

    def _spend(
        self, limiter: FixedWindowRateLimiter, items: list[RateLimitItem], *ids: str
    ) -> list[str]:
        """Count one failure in every window of a budget; ``[budget]`` if this failure was
        the one that spent a window (a lockout starts: ``medchat_sign_in_lockouts_total``)."""
        spent = False
        for item in items:
            if limiter.hit(item, self._prefix, *ids) and not limiter.test(item, self._prefix, *ids):
                spent = True
        return [ids[0]] if spent else []

    def password_failed(self, account: str, address: str) -> None:
        def count(limiter: FixedWindowRateLimiter) -> list[str]:
            pair = ("sign-in-pair", account, rate_limit_address(address))
            return self._spend(limiter, self._pair, *pair) + (
                self._spend(limiter, self._account, "sign-in-account", account)
            )

        self._on_failure("password", self._counter.run(count))

    def code_failed(self, account: str) -> None:
        def count(limiter: FixedWindowRateLimiter) -> list[str]:
            return self._spend(limiter, self._code, "sign-in-code", account)

        self._on_failure("second_factor", self._counter.run(count))

    def storage_answers(self) -> bool:
        """The shared storage answers a ping (``/readyz``); never raises."""
        return bool(self._counter.storage.check())
