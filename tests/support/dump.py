"""Everything a thief with the database gets: the SQLite file bytes, or a PostgreSQL dump."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from sqlalchemy import Engine, inspect, text


def database_dump(engine: Engine) -> bytes:
    """All stored bytes: the SQLite file (and its WAL), or pg_dump's output plus every row.

    The row pass renders bytea as raw bytes too, so a value hidden inside a binary column
    is found whatever its encoding in the dump.
    """
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database or "")
        chunks = [path.read_bytes()]
        for suffix in ("-wal", "-journal"):
            extra = path.with_name(path.name + suffix)
            if extra.exists():
                chunks.append(extra.read_bytes())
        return b"".join(chunks)
    chunks = []
    pg_dump = shutil.which("pg_dump")
    if pg_dump:
        url = engine.url
        chunks.append(
            subprocess.run(
                [
                    pg_dump,
                    "-h",
                    url.host or "127.0.0.1",
                    "-p",
                    str(url.port or 5432),
                    "-U",
                    url.username or "postgres",
                    "--data-only",
                    url.database or "",
                ],
                check=True,
                capture_output=True,
            ).stdout
        )
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            # Table names come from the schema itself, not from input.
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    if isinstance(value, (bytes, memoryview)):
                        chunks.append(bytes(value))
                    elif value is not None:
                        chunks.append(str(value).encode())
    return b"\n".join(chunks)
