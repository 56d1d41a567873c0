"""The refusal tally (``web.refusal_tally``): one entry per window, carrying every refusal.

``admit`` is the full path's (the error handler writes an entry when it returns a count);
``counted`` the early path's (``web.password_gate``), which may only count, never write.
"""

from __future__ import annotations

from medchat.web.refusal_tally import RefusalTally

KEY = ("password_work", "auth.token")


def tally_at(now: list[float]) -> RefusalTally:
    return RefusalTally(window_seconds=1.0, clock=lambda: now[0])


def test_the_first_refusal_of_a_window_is_written_and_the_rest_counted_into_the_next():
    now = [100.0]
    tally = tally_at(now)
    assert tally.admit(*KEY) == 1
    assert [tally.admit(*KEY) for _ in range(3)] == [None, None, None]
    now[0] += 1.0
    assert tally.admit(*KEY) == 4


def test_counted_only_counts_within_a_written_window():
    now = [100.0]
    tally = tally_at(now)
    assert not tally.counted(*KEY)  # no entry yet: the full path must write it
    assert tally.admit(*KEY) == 1
    assert tally.counted(*KEY) and tally.counted(*KEY)
    now[0] += 0.999
    assert tally.counted(*KEY)
    now[0] += 0.001  # the window is over: the next refusal must be written
    assert not tally.counted(*KEY)
    assert tally.admit(*KEY) == 4  # three counted early, and itself


def test_windows_are_kept_per_dependency_and_endpoint():
    now = [100.0]
    tally = tally_at(now)
    assert tally.admit(*KEY) == 1
    assert not tally.counted("password_work", "console.login")
    assert not tally.counted("redis", "auth.token")
    assert tally.counted(*KEY)
