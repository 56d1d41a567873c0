"""Upload buffers live in memory and refuse to grow past the per-file limit."""

from __future__ import annotations

import pytest
from werkzeug.exceptions import RequestEntityTooLarge

from medchat.web.uploads import BoundedMemoryFile


def test_a_buffer_accepts_exactly_its_limit():
    buffer = BoundedMemoryFile(8)
    buffer.write(b"1234")
    buffer.write(memoryview(b"5678"))
    buffer.seek(0)
    assert buffer.read() == b"12345678"


def test_a_buffer_refuses_the_first_byte_past_its_limit():
    buffer = BoundedMemoryFile(8)
    buffer.write(b"12345678")
    with pytest.raises(RequestEntityTooLarge):
        buffer.write(b"9")
    with pytest.raises(RequestEntityTooLarge):
        BoundedMemoryFile(8).writelines([b"12345", b"6789"])
