"""Time, injected: production reads the system clock, tests pass a clock they control.

Lifetimes (tokens, enrollment, TOTP steps, retention) are all decided against ``Clock.now()``,
never against ``datetime.now()`` scattered through the code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol, overload


class Clock(Protocol):
    """Anything that tells the current UTC time."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock, timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@overload
def iso_z(value: datetime) -> str: ...


@overload
def iso_z(value: None) -> None: ...


@overload
def iso_z(value: datetime | None) -> str | None: ...


def iso_z(value: datetime | None) -> str | None:
    """ISO 8601 with ``Z`` for UTC (API.md "Conventions"); ``None`` stays ``None``.

    The one spelling of a time the service writes: API bodies, CLI output, audit details,
    archive bundles and the signed audit anchor all use it, so it must not change by a byte
    (anchors and bundles already signed would no longer verify). It does not convert: a time
    in another zone keeps its offset (``--as-of 2029-01-01T01:00:00+01:00`` is echoed as
    given); callers that promise UTC convert first (``medchat.schemas.common.utc_iso``).
    """
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")
