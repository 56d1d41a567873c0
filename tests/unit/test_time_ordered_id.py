"""Message ids rise with time (``medchat.db.time_ordered_id``: UUID version 7, RFC 9562)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from medchat.db import time_ordered_id

NOW = datetime(2026, 12, 6, 23, 59, 58, 123456, tzinfo=UTC)


def milliseconds_of(value: uuid.UUID) -> int:
    return value.int >> 80


def test_the_layout_is_rfc_9562_version_7_with_the_time_in_milliseconds():
    made = time_ordered_id(NOW)
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert milliseconds_of(made) == int(NOW.timestamp()) * 1000 + 123
    assert datetime.fromtimestamp(milliseconds_of(made) / 1000, UTC) == NOW.replace(
        microsecond=123000
    )


def test_ids_of_one_millisecond_differ_in_74_random_bits():
    made = {time_ordered_id(NOW) for _ in range(2000)}
    assert len(made) == 2000
    random_bits = {(value.int >> 64) & 0xFFF for value in made} | {
        value.int & ((1 << 62) - 1) for value in made
    }
    assert len(random_bits) > 3000  # both random fields vary


def test_a_later_time_sorts_after_whatever_the_random_bits():
    earlier = [time_ordered_id(NOW) for _ in range(200)]
    later = [time_ordered_id(NOW + timedelta(milliseconds=1)) for _ in range(200)]
    assert max(earlier) < min(later)
    assert max(str(e) for e in earlier) < min(str(x) for x in later)  # as text, too


def test_the_last_datetime_fits_and_a_time_before_1970_is_refused():
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert milliseconds_of(time_ordered_id(last)) == 253_402_300_799_999  # exact, not a float
    assert milliseconds_of(time_ordered_id(datetime(1970, 1, 1, tzinfo=UTC))) == 0
    with pytest.raises(ValueError, match="time-ordered id"):
        time_ordered_id(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
