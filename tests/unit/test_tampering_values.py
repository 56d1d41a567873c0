"""The tampering tests' altered values really differ from what they replace.

A tampering test that writes back the value already there alters nothing and proves nothing.
The rules this helper replaced could: a last letter overwritten with "x" leaves a device label
such as "Chrome on Linux" as it was, and reversing leaves a palindrome, or bytes all alike.
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
