"""Time, injected: production reads the system clock, tests pass a clock they control.

Lifetimes (tokens, enrollment, TOTP steps, retention) are all decided against ``Clock.now()``,
never against ``datetime.now()`` scattered through the code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the current UTC time."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock, timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)
