"""Backups sealed to an offline key: a stream in, a stream out, never the plaintext at rest.

The privacy policy promises encrypted backups. ``medchat backup create`` pipes ``pg_dump``
through ``seal_stream`` to a file; only the holder of the backup private key, kept offline
and never on the server, opens it again (``open_stream``, ``medchat backup restore``).

Format ``medchat-backup/v1`` (everything big-endian)::

    magic "MCBACKUP1\\n" (10) || backup id (16 random bytes) || wrap (hybrid_kem.WRAP_SIZE)
    then frames: length (4) || envelope        (crypto.seal under the file key)

- The **file key** is 32 random bytes, sealed to the backup public key with the project's
  HPKE (``hybrid_kem.wrap_key``: ML-KEM-768 + X25519, purpose ``backup``, the backup id as
  context): a copy of the backup and of the whole server opens nothing.
- The dump is cut into chunks of ``CHUNK_SIZE``; each is an AES-256-GCM envelope whose
  associated data binds the backup id, the chunk's index and whether it is the **last** one
  (the STREAM construction, Hoang, Reyhanitabar, Rogaway, Vizár 2015): chunks cannot be
  reordered, dropped, moved between backups, and a backup cut short lacks its last chunk and
  is refused. Only one chunk is in memory at a time, plaintext or sealed.
- ``open_stream`` writes a chunk's plaintext only after it authenticated; a failure later in
  the stream raises ``DecryptionFailed`` after earlier chunks were written, so the consumer
  must be transactional (``medchat backup restore`` runs ``psql --single-transaction`` and
  kills it on a failure: nothing is committed).
"""

from __future__ import annotations

import secrets
from typing import IO, Final

from access_control import hybrid_kem
from access_control.crypto import AeadKey, DecryptionFailed, associated_data, generate_key

MAGIC: Final = b"MCBACKUP1\n"
_ID_SIZE: Final = 16
#: 1 MiB chunks: a dump streams in constant memory, and per-chunk overhead (4 + 21 + 16
#: bytes) stays negligible.
CHUNK_SIZE: Final = 1 << 20
PURPOSE_BACKUP: Final = "backup"
_CHUNK_LABEL: Final = "medchat/backup-chunk/v1"
_MAX_FRAME: Final = CHUNK_SIZE + 64


def _chunk_aad(backup_id: bytes, index: int, last: bool) -> bytes:
    return associated_data(_CHUNK_LABEL, backup_id, index, int(last))


def _read_exactly(source: IO[bytes], size: int) -> bytes:
    data = b""
    while len(data) < size:
        part = source.read(size - len(data))
        if not part:
            break
        data += part
    return data


def _read_chunk(source: IO[bytes]) -> bytes:
    """Up to ``CHUNK_SIZE`` bytes: pipes return short reads, so keep reading until full."""
    return _read_exactly(source, CHUNK_SIZE)


def seal_stream(source: IO[bytes], sink: IO[bytes], public_key: bytes) -> int:
    """Seal everything ``source`` yields to ``public_key`` into ``sink``; the chunks written.

    Raises ``IntegrityCheckFailed`` for a malformed or unsafe public key (nothing written).
    """
    backup_id = secrets.token_bytes(_ID_SIZE)
    file_key = generate_key()
    wrap = hybrid_kem.wrap_key(
        public_key,
        file_key,
        recipient_id=hybrid_kem.public_key_id(public_key),
        context_id=backup_id,
        purpose=PURPOSE_BACKUP,
    )
    aead = AeadKey(file_key)
    del file_key
    sink.write(MAGIC + backup_id + wrap)
    index = 0
    chunk = _read_chunk(source)
    while True:
        following = _read_chunk(source) if len(chunk) == CHUNK_SIZE else b""
        last = not following
        envelope = aead.seal(chunk, _chunk_aad(backup_id, index, last))
        sink.write(len(envelope).to_bytes(4, "big") + envelope)
        index += 1
        if last:
            return index
        chunk = following


def open_stream(
    source: IO[bytes], sink: IO[bytes], private_key: hybrid_kem.PrivateKeyHandle
) -> int:
    """Open a backup made by ``seal_stream`` for ``private_key`` into ``sink``; the chunks.

    Raises ``DecryptionFailed`` for any other key, altered, reordered, missing or extra byte,
    and for a stream cut short (no last chunk), possibly after earlier chunks were written.
    """
    head = _read_exactly(source, len(MAGIC) + _ID_SIZE + hybrid_kem.WRAP_SIZE)
    if len(head) != len(MAGIC) + _ID_SIZE + hybrid_kem.WRAP_SIZE or not head.startswith(MAGIC):
        raise DecryptionFailed
    backup_id = head[len(MAGIC) : len(MAGIC) + _ID_SIZE]
    file_key = hybrid_kem.unwrap_key(
        private_key,
        head[len(MAGIC) + _ID_SIZE :],
        recipient_id=private_key.key_id,
        context_id=backup_id,
        purpose=PURPOSE_BACKUP,
    )
    aead = AeadKey(file_key)
    del file_key
    index = 0
    while True:
        length_bytes = _read_exactly(source, 4)
        if len(length_bytes) != 4:
            raise DecryptionFailed  # cut short: the last chunk never came
        length = int.from_bytes(length_bytes, "big")
        if length > _MAX_FRAME:
            raise DecryptionFailed
        envelope = _read_exactly(source, length)
        if len(envelope) != length:
            raise DecryptionFailed
        try:
            plaintext = aead.open(envelope, _chunk_aad(backup_id, index, False))
            last = False
        except DecryptionFailed:
            plaintext = aead.open(envelope, _chunk_aad(backup_id, index, True))
            last = True
        sink.write(plaintext)
        index += 1
        if last:
            if source.read(1):
                raise DecryptionFailed  # bytes after the last chunk
            return index
