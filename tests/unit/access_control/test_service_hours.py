"""``MEDCHAT_SERVICE_HOURS`` parsed (``access_control.service_hours``): what is accepted, and
each refusal with the message an operator reads at start."""

from __future__ import annotations

from datetime import time

import pytest

from access_control.service_hours import ServicePeriod, parse_service_hours


def test_periods_with_day_ranges_and_single_days():
    assert parse_service_hours("mon-fri 08:00-18:00, SAT 09:00-12:00") == (
        ServicePeriod((0, 1, 2, 3, 4), time(8), time(18)),
        ServicePeriod((5,), time(9), time(12)),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mon 8-18", "'mon 8-18' is not like 'mon-fri 08:00-18:00'"),
        ("someday 08:00-18:00", "'someday 08:00-18:00' is not like 'mon-fri 08:00-18:00'"),
        (
            "mon 08:00:00-18:00",
            "'mon 08:00:00-18:00': a day range in order, opening before closing",
        ),
        (
            "mon 08:00-18:00:00",
            "'mon 08:00-18:00:00': a day range in order, opening before closing",
        ),
        ("mon 08:00-08:00", "'mon 08:00-08:00': a day range in order, opening before closing"),
        (
            "fri-mon 08:00-18:00",
            "'fri-mon 08:00-18:00': a day range in order, opening before closing",
        ),
    ],
)
def test_each_refusal_names_the_period_and_the_rule(text, message):
    """``parse_service_hours`` 22, 25, 31, 33."""
    with pytest.raises(ValueError) as raised:
        parse_service_hours(text)
    assert str(raised.value) == message
