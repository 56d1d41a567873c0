"""The tampering tests' altered values really differ from what they replace.

A tampering test that writes back the value already there alters nothing and proves nothing;
it then fails or passes on which row the database happened to return first (CI once took a
known-device row labelled "Chrome on Linux", which the old "last letter becomes x" left as it
was).
"""

from __future__ import annotations

import pytest

from tests.support.tampering import flipped

_AWKWARD = [
    "Chrome on Linux",  # already ends in the letter a naive rule writes
    "abba",  # reverses to itself
    "x",
    "",
    b"",
    b"\x00" * 32,  # every byte alike: reverses to itself
    b"\x01" * 32,
    b"abba",
    b"\xff",
    bytes(range(32)),
]


@pytest.mark.parametrize("value", _AWKWARD, ids=repr)
def test_a_flipped_value_differs_and_keeps_its_type_and_length(value):
    changed = flipped(value)
    assert changed != value
    assert type(changed) is type(value)
    assert len(changed) == (len(value) or 1)
