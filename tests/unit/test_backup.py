"""Backups sealed to an offline key (issue 16 item 5): the stream format, and ``medchat
backup create`` / ``restore`` round-tripping a PostgreSQL database through pg_dump and psql."""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, make_url, text

from access_control import backup_stream, hybrid_kem
from access_control.crypto import DecryptionFailed
from medchat.cli.backup import backup_group
from tests.support.backups import CANARY, Trickle
from tests.support.databases import PG_ENV, fresh_database


@pytest.fixture
def keypair() -> hybrid_kem.PrivateKeyHandle:
    return hybrid_kem.generate_kem_keypair()


def _sealed(data: bytes, public_key: bytes) -> bytes:
    sink = io.BytesIO()
    backup_stream.seal_stream(io.BytesIO(data), sink, public_key)
    return sink.getvalue()


def _opened(sealed: bytes, key: hybrid_kem.PrivateKeyHandle) -> bytes:
    sink = io.BytesIO()
    backup_stream.open_stream(io.BytesIO(sealed), sink, key)
    return sink.getvalue()


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        backup_stream.CHUNK_SIZE - 1,
        backup_stream.CHUNK_SIZE,
        2 * backup_stream.CHUNK_SIZE + 5,
    ],
)
def test_a_stream_round_trips_in_chunks_and_hides_its_content(keypair, size):
    data = (CANARY * (size // len(CANARY) + 1))[:size]
    sealed = _sealed(data, keypair.public_key_bytes)
    assert CANARY not in sealed and CANARY[:16] not in sealed
    assert _opened(sealed, keypair) == data
    sink = io.BytesIO()
    backup_stream.seal_stream(io.BufferedReader(Trickle(data)), sink, keypair.public_key_bytes)  # type: ignore[arg-type]
    assert _opened(sink.getvalue(), keypair) == data


def test_another_key_an_altered_byte_a_cut_or_an_extra_byte_opens_nothing(keypair):
    data = os.urandom(2 * backup_stream.CHUNK_SIZE + 100)
    sealed = _sealed(data, keypair.public_key_bytes)
    header = len(backup_stream.MAGIC) + 16 + hybrid_kem.WRAP_SIZE
    frame = 4 + backup_stream.CHUNK_SIZE + 37
    with pytest.raises(DecryptionFailed):
        _opened(sealed, hybrid_kem.generate_kem_keypair())
    for position in (0, 12, header - 1, header + 2, header + 100, len(sealed) - 1):
        altered = bytearray(sealed)
        altered[position] ^= 0x01
        with pytest.raises(DecryptionFailed):
            _opened(bytes(altered), keypair)
    # Cut after a whole chunk: what is left authenticates, but the last chunk never came.
    with pytest.raises(DecryptionFailed):
        _opened(sealed[: header + frame], keypair)
    with pytest.raises(DecryptionFailed):
        _opened(sealed + b"\x00", keypair)
    # Chunks swapped: each is bound to its place.
    first, second = sealed[header : header + frame], sealed[header + frame : header + 2 * frame]
    with pytest.raises(DecryptionFailed):
        _opened(sealed[:header] + second + first + sealed[header + 2 * frame :], keypair)


def test_a_chunk_of_another_backup_to_the_same_key_is_refused(keypair):
    data = os.urandom(backup_stream.CHUNK_SIZE + 10)
    one, two = (_sealed(data, keypair.public_key_bytes) for _ in range(2))
    header = len(backup_stream.MAGIC) + 16 + hybrid_kem.WRAP_SIZE
    with pytest.raises(DecryptionFailed):
        _opened(one[:header] + two[header:], keypair)


@contextmanager
def _empty_database() -> Iterator[str]:
    admin_url = make_url(os.environ[PG_ENV].replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"medchat_restore_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    with engine.connect() as connection:
        names = connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).scalars()
        found = set(names)
    engine.dispose()
    return found


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="needs PostgreSQL (pg_dump, psql)")
def test_a_postgresql_database_round_trips_through_a_sealed_backup(tmp_path: Path):
    runner = CliRunner()
    public, private = tmp_path / "backup.pub", tmp_path / "backup.key"
    made = runner.invoke(
        backup_group, ["keygen", "--public-out", str(public), "--private-out", str(private)]
    )
    assert made.exit_code == 0, made.output
    assert private.stat().st_mode & 0o777 == 0o600
    sealed = tmp_path / "medchat.backup"
    with fresh_database("postgresql", tmp_path) as source:
        engine = create_engine(source)
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE canary (value text)"))
            connection.execute(text("INSERT INTO canary VALUES (:v)"), {"v": CANARY.decode()})
            # Three megabytes more: the dump spans several chunks, so a tampered last chunk
            # reaches psql after authentic ones.
            connection.execute(
                text("INSERT INTO canary SELECT repeat('x', 1000) FROM generate_series(1, 3000)")
            )
            head = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        engine.dispose()
        created = runner.invoke(
            backup_group,
            ["create", "--to", str(public), "--output", str(sealed), "--database-url", source],
        )
        assert created.exit_code == 0, created.output
        expected_tables = _tables(source)
    raw = sealed.read_bytes()
    assert raw.startswith(backup_stream.MAGIC)
    assert len(raw) > 2 * backup_stream.CHUNK_SIZE
    assert CANARY not in raw and b"CREATE TABLE" not in raw and b"alembic_version" not in raw

    with _empty_database() as target:
        # A tampered backup restores nothing, not even its authentic first chunk.
        tampered = tmp_path / "tampered.backup"
        altered = bytearray(raw)
        altered[-3] ^= 0x01
        tampered.write_bytes(bytes(altered))
        refused = runner.invoke(
            backup_group,
            ["restore", "--key", str(private), "--input", str(tampered), "--database-url", target],
        )
        assert refused.exit_code == 1 and "nothing was restored" in refused.output
        assert _tables(target) == set()

        restored = runner.invoke(
            backup_group,
            ["restore", "--key", str(private), "--input", str(sealed), "--database-url", target],
        )
        assert restored.exit_code == 0, restored.output
        assert _tables(target) == expected_tables
        engine = create_engine(target)
        with engine.connect() as connection:
            values = connection.execute(text("SELECT value FROM canary")).scalars().all()
            assert values[0] == CANARY.decode() and len(values) == 3001
            assert (
                connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
            )
        engine.dispose()
