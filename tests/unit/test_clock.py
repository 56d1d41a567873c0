"""``medchat.clock.iso_z``: the one spelling of a time in API bodies, CLI output, audit details,
archive bundles and signed audit anchors. Signed anchors and bundles already stored must still
verify, so the spelling is pinned here to the byte."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from medchat.clock import iso_z


def test_utc_is_spelled_with_z() -> None:
    assert iso_z(datetime(2029, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2029-01-02T03:04:05Z"


def test_microseconds_are_kept() -> None:
    moment = datetime(2029, 1, 2, 3, 4, 5, 60, tzinfo=UTC)
    assert iso_z(moment) == "2029-01-02T03:04:05.000060Z"


def test_another_zone_keeps_its_offset() -> None:
    """Not converted: an operator's ``--as-of ...+01:00`` is echoed as given."""
    moment = datetime(2029, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert iso_z(moment) == "2029-01-01T01:00:00+01:00"


def test_none_stays_none() -> None:
    assert iso_z(None) is None
