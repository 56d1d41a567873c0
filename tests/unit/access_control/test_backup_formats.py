"""The backup format written out (``access_control.backup_stream``, ``medchat-backup/v1``).

``tests/unit/test_backup.py`` proves what a round trip can: altered, cut, reordered and foreign
chunks refused. A round trip cannot see the chunks' associated data change (another label or
the backup id left out would still open with the same code), nor reads that come short. Here
a backup is opened by hand, from the format as the module's docstring states it, and both
ends read from a pipe that hands out a few bytes at a time.
"""

from __future__ import annotations

import io

import pytest

from access_control import backup_stream, hybrid_kem
from access_control.crypto import AeadKey, associated_data
from tests.support.backups import CANARY, Trickle


@pytest.fixture
def keypair() -> hybrid_kem.PrivateKeyHandle:
    return hybrid_kem.generate_kem_keypair()


def test_a_backup_opens_by_hand_from_its_stated_format(keypair):
    """``_chunk_aad`` 1, 2, 5, 6: each chunk's associated data is the label, the backup id,
    the chunk's index and whether it is the last, in that order."""
    data = CANARY * (backup_stream.CHUNK_SIZE // len(CANARY) + 2)  # two chunks
    sink = io.BytesIO()
    assert backup_stream.seal_stream(io.BytesIO(data), sink, keypair.public_key_bytes) == 2
    sealed = sink.getvalue()

    magic, rest = sealed[:10], sealed[10:]
    backup_id, rest = rest[:16], rest[16:]
    wrap, rest = rest[: hybrid_kem.WRAP_SIZE], rest[hybrid_kem.WRAP_SIZE :]
    assert magic == b"MCBACKUP1\n"
    file_key = hybrid_kem.unwrap_key(
        keypair, wrap, recipient_id=keypair.key_id, context_id=backup_id, purpose="backup"
    )
    aead, opened, index = AeadKey(file_key), b"", 0
    while rest:
        length, rest = int.from_bytes(rest[:4], "big"), rest[4:]
        envelope, rest = rest[:length], rest[length:]
        last = not rest
        label = associated_data("medchat/backup-chunk/v1", backup_id, index, int(last))
        opened += aead.open(envelope, label)
        index += 1
    assert (opened, index) == (data, 2)


def test_both_ends_read_a_pipe_that_hands_out_a_few_bytes_at_a_time(keypair):
    """``_read_exactly`` 6, 9: a short read is followed by the rest, never more, never lost."""
    data = CANARY * (backup_stream.CHUNK_SIZE // len(CANARY) + 2)
    sink = io.BytesIO()
    backup_stream.seal_stream(Trickle(data), sink, keypair.public_key_bytes)  # type: ignore[arg-type]
    opened = io.BytesIO()
    chunks = backup_stream.open_stream(Trickle(sink.getvalue()), opened, keypair)  # type: ignore[arg-type]
    assert (opened.getvalue(), chunks) == (data, 2)
