"""The sign-in failure budgets on their own: what each failure spends, what each refusal says,
and the per-process count while the shared storage is down.

The API's tests (tests/api/test_sign_in_limits.py) show the budgets at the sign-in routes;
these pin the budgets' own rules, on the rate limiter's real storages: ``memory://``, and a
private ``redis-server`` on a Unix socket for an outage that ends.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from limits import parse_many

from access_control.sign_in_limits import RECHECK_SECONDS, SignInLimits

ACCOUNT = SignInLimits.account_key(b"\x01\x02")
WARNINGS = "medchat.sign_in_limits"


class Spent:
    """The ``on_failure`` hook: each failure's factor and the budgets it spent."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(self, factor: str, spent: list[str]) -> None:
        self.calls.append((factor, spent))


def limits_in_memory(hook: Spent | None = None, prefix: str = "test") -> SignInLimits:
    return SignInLimits("memory://", prefix, hook)


def test_an_account_is_named_by_its_blind_index_in_hex() -> None:
    assert ACCOUNT == "0102"


def test_the_failure_that_spends_a_window_is_reported_once() -> None:
    hook = Spent()
    limits = limits_in_memory(hook)
    for _ in range(6):
        limits.password_failed(ACCOUNT, "192.0.2.1")
    assert hook.calls == [("password", [])] * 4 + [("password", ["sign-in-pair"])] + [
        ("password", [])
    ]


def test_failures_from_many_addresses_spend_the_accounts_budget() -> None:
    hook = Spent()
    limits = limits_in_memory(hook)
    for n in range(20):
        limits.password_failed(ACCOUNT, f"192.0.2.{n}")
    assert hook.calls[-1] == ("password", ["sign-in-account"])
    assert all(spent == [] for _, spent in hook.calls[:-1])
    assert limits.locked(ACCOUNT) is not None
    assert limits.refusal(ACCOUNT, "192.0.2.99") is None  # soft: the pair budget decides


def test_second_factor_failures_spend_their_own_budget() -> None:
    hook = Spent()
    limits = limits_in_memory(hook)
    for _ in range(5):
        limits.code_failed(ACCOUNT)
    assert hook.calls == [("second_factor", [])] * 4 + [("second_factor", ["sign-in-code"])]
    assert limits.code_refusal(ACCOUNT) is not None
    assert limits.refusal(ACCOUNT, "192.0.2.1") is not None  # every address, every sign-in


def test_a_refusal_is_a_429_with_the_wait_until_its_window_ends() -> None:
    limits = limits_in_memory()
    assert limits.refusal(ACCOUNT, "192.0.2.1") is None
    for _ in range(5):
        limits.password_failed(ACCOUNT, "192.0.2.1")
    refused = limits.refusal(ACCOUNT, "192.0.2.1")
    assert refused is not None
    assert refused.status == 429
    assert list(refused.headers) == ["Retry-After"]
    assert 800 <= int(refused.headers["Retry-After"]) <= 900  # the 15-minute window
    assert limits.refusal(ACCOUNT, "192.0.2.2") is None  # another address: its own budget
    assert limits.locked(ACCOUNT) is None


def test_a_window_ending_within_a_second_asks_for_a_whole_one() -> None:
    limits = limits_in_memory()
    limits._code = parse_many("1 per 1 second")  # a window short enough to end in the test
    for _ in range(3):  # a pause of over a second (a loaded machine) ends the window: again
        limits.code_failed(ACCOUNT)
        refused = limits.code_refusal(ACCOUNT)
        if refused is not None:
            break
    assert refused is not None
    assert refused.headers == {"Retry-After": "1"}  # under a second left, rounded up


def test_budgets_are_kept_under_the_key_prefix() -> None:
    limits = limits_in_memory(prefix="medchat-tenant-a")
    limits.password_failed(ACCOUNT, "192.0.2.1")
    limits.code_failed(ACCOUNT)
    keys = list(limits._counter.storage.storage)
    assert keys
    assert all("medchat-tenant-a/sign-in-" in key for key in keys), keys
    for _ in range(4):
        limits.password_failed(ACCOUNT, "192.0.2.1")
    assert limits.refusal(ACCOUNT, "192.0.2.1") is not None


def test_without_a_hook_failures_are_counted_all_the_same() -> None:
    limits = SignInLimits("memory://", "test")
    for _ in range(5):
        limits.password_failed(ACCOUNT, "192.0.2.1")
        limits.code_failed(ACCOUNT)
    assert limits.refusal(ACCOUNT, "192.0.2.1") is not None


def test_a_healthy_storage_is_used_without_a_word(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=WARNINGS):
        limits = limits_in_memory()
        limits.password_failed(ACCOUNT, "192.0.2.1")
        assert limits.storage_answers()
    assert caplog.records == []


# -- the shared storage down, then back --------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class PrivateRedis:
    """A redis-server of this test's own on a Unix socket, started only when asked."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.uri = f"redis+unix://{socket}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian's redis-server package)")
    server = PrivateRedis(tmp_path / "redis.sock")
    yield server
    server.stop()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == WARNINGS]


def test_while_the_storage_is_down_budgets_are_counted_in_this_process_then_shared_again(
    redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    limits = SignInLimits(redis.uri, "test", monotonic=clock)
    with caplog.at_level(logging.WARNING, logger=WARNINGS):
        limits.password_failed(ACCOUNT, "192.0.2.1")
        assert warnings(caplog) == [
            "rate limit storage unreachable (ConnectionError): sign-in budgets counted per "
            "process until it answers"
        ]
        assert not limits.storage_answers()

        redis.start()
        # Not asked again before its time (even though it would answer now): the failures
        # go on being counted here, and this address is refused on this process's count.
        for _ in range(4):
            limits.password_failed(ACCOUNT, "192.0.2.1")
        assert limits.refusal(ACCOUNT, "192.0.2.1") is not None
        clock.now += RECHECK_SECONDS - 0.001
        assert limits.refusal(ACCOUNT, "192.0.2.1") is not None
        assert len(warnings(caplog)) == 1

        clock.now += 0.001
        # Asked again on time, and it answers: the shared storage, with none of these failures.
        assert limits.refusal(ACCOUNT, "192.0.2.1") is None
        assert warnings(caplog)[1:] == [
            "rate limit storage answers again: sign-in budgets are shared again"
        ]
        assert limits.storage_answers()
        for _ in range(5):
            limits.password_failed(ACCOUNT, "192.0.2.1")
        # Counted in the shared storage at once: another process sees the lockout.
        other_process = SignInLimits(redis.uri, "test")
        assert other_process.refusal(ACCOUNT, "192.0.2.1") is not None
    assert len(warnings(caplog)) == 2


def test_a_storage_still_down_at_its_recheck_is_asked_again_later(
    redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    limits = SignInLimits(redis.uri, "test", monotonic=clock)
    with caplog.at_level(logging.WARNING, logger=WARNINGS):
        limits.code_failed(ACCOUNT)
        clock.now += RECHECK_SECONDS
        limits.code_failed(ACCOUNT)  # asked, still down: counted here, no new warning
        redis.start()
        clock.now += RECHECK_SECONDS - 0.001
        assert limits.code_refusal(ACCOUNT) is None
        assert len(warnings(caplog)) == 1  # the next check is a whole interval later
        clock.now += 0.001
        limits.code_failed(ACCOUNT)
    assert len(warnings(caplog)) == 2
