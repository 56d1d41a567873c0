"""Service hours as an operator writes them (``MEDCHAT_SERVICE_HOURS``), parsed and checked.

A primitive beside ``networks``: pure parsing, so a bad value is refused when the settings
are built (``medchat.config``), before the service starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

#: Days as ``MEDCHAT_SERVICE_HOURS`` names them, Monday first (``datetime.weekday``).
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class ServicePeriod:
    """Doctors answer on ``days`` (weekday numbers, Monday 0) from ``opens`` to ``closes``."""

    days: tuple[int, ...]
    opens: time
    closes: time


def parse_service_hours(text: str) -> tuple[ServicePeriod, ...]:
    """``"mon-fri 08:00-18:00, sat 09:00-12:00"``: comma-separated periods, each a day or a
    day range and a time range on one day (opens before closes). Raises ``ValueError``."""
    periods = []
    for part in text.split(","):
        try:
            day_text, hours_text = part.split()
            first, _, last = day_text.lower().partition("-")
            start, end = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
            opens_text, closes_text = hours_text.split("-")
            opens, closes = time.fromisoformat(opens_text), time.fromisoformat(closes_text)
        except ValueError:
            raise ValueError(f"{part.strip()!r} is not like 'mon-fri 08:00-18:00'") from None
        if len(opens_text) != 5 or len(closes_text) != 5 or not opens < closes or start > end:
            raise ValueError(f"{part.strip()!r}: a day range in order, opening before closing")
        periods.append(ServicePeriod(tuple(range(start, end + 1)), opens, closes))
    return tuple(periods)
