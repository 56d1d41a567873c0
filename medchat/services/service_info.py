"""What a member is told before asking (issue 17, item 4): when doctors answer, how soon,
and that this is not for emergencies.

Served by ``GET /api/v1/service``, public: the app shows it before sign-in and before a
question is sent, and it holds nothing about anyone. Hours and the expected response time are
settings (``MEDCHAT_SERVICE_HOURS``, ``MEDCHAT_SERVICE_TIMEZONE``,
``MEDCHAT_RESPONSE_TARGET_HOURS``, checked at start). The emergency notice is fixed text with a
version: asking a question needs the member's acknowledgement of the current version (the
``emergency_notice`` field, 422 otherwise), stored with the question. A new wording gets a new
version, and apps built for the old one are told so by the 422 (``details.emergency_notice``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from access_control.service_hours import WEEKDAYS
from medchat.config import Settings

NOTICE_VERSION = "2026-12"
NOTICE_TEXT = (
    "This service is not for emergencies. In an emergency, call 112 (or your local "
    "emergency number) now."
)


@dataclass(frozen=True)
class Period:
    days: list[str]
    opens: str
    closes: str


@dataclass(frozen=True)
class Notice:
    version: str
    text: str


@dataclass(frozen=True)
class ServiceInfo:
    hours: list[Period]
    timezone: str
    open_now: bool
    expected_response_hours: int
    emergency_notice: Notice


def service_info(settings: Settings, now: datetime) -> ServiceInfo:
    """The service's hours, whether it is open at ``now``, the response target, the notice."""
    periods = settings.service_periods
    local = now.astimezone(ZoneInfo(settings.service_timezone))
    open_now = any(
        local.weekday() in period.days and period.opens <= local.time() < period.closes
        for period in periods
    )
    return ServiceInfo(
        hours=[
            Period(
                [WEEKDAYS[day] for day in period.days],
                period.opens.strftime("%H:%M"),
                period.closes.strftime("%H:%M"),
            )
            for period in periods
        ],
        timezone=settings.service_timezone,
        open_now=open_now,
        expected_response_hours=settings.response_target_hours,
        emergency_notice=Notice(NOTICE_VERSION, NOTICE_TEXT),
    )
