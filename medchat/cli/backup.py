"""``medchat backup``: database backups sealed to an offline key (deploy/README.md, "Backups").

- ``keygen`` (on the offline machine that keeps the private key): a backup keypair, the
  public key file for the server, the private key file (mode 0600) for the safe.
- ``create --to PUBLIC_KEY_FILE``: ``pg_dump`` piped through ``access_control.backup_stream``
  into ``--output`` (or stdout): the dump is never written or held whole in clear, one chunk
  at a time in memory.
- ``restore --key PRIVATE_KEY_FILE``: the reverse, piped into ``psql --single-transaction``;
  a backup that fails to open (another key, altered, cut short) kills psql before it commits,
  so the database is left as it was. Exit 1 with the reason.

The database is ``--database-url`` (or ``MEDCHAT_DATABASE_URL``), PostgreSQL only; its
password reaches pg_dump and psql through their environment (``PGPASSWORD``), never their
command line, where any local user would read it. None of these commands needs the app, its
keys or its configuration: a restore runs on a fresh machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess  # nosec B404 - runs pg_dump and psql, resolved to absolute paths, no shell
import sys
from pathlib import Path
from typing import IO

import click
from sqlalchemy.engine import make_url

from access_control import backup_stream, hybrid_kem
from access_control.crypto import DecryptionFailed, IntegrityCheckFailed
from medchat.cli.output import emit, fail, json_option

backup_group = click.Group("backup", help="Database backups sealed to an offline key.")

_PUBLIC_LABEL = "medchat-backup-public-key/v1"
_PRIVATE_LABEL = "medchat-backup-private-key/v1"
_database_url = click.option(
    "--database-url",
    envvar="MEDCHAT_DATABASE_URL",
    required=True,
    help="The PostgreSQL database (default: MEDCHAT_DATABASE_URL).",
)


def _client_environment(url: str) -> dict[str, str]:
    """libpq's variables for ``url`` (a SQLAlchemy URL), added to this environment."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        fail("backups are for PostgreSQL databases only")
    values = {
        "PGHOST": parsed.host,
        "PGPORT": None if parsed.port is None else str(parsed.port),
        "PGUSER": parsed.username,
        "PGPASSWORD": parsed.password,
        "PGDATABASE": parsed.database,
    }
    environment = {**os.environ}
    environment.update({key: value for key, value in values.items() if value})
    return environment


def _program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        fail(f"{name} not found: install the PostgreSQL client")
    return path


def _read_key_file(path: Path, label: str) -> bytes:
    lines = path.read_text(encoding="ascii").split()
    if len(lines) != 2 or lines[0] != label:
        fail(f"{path} is not a {label} file")
    try:
        return bytes.fromhex(lines[1])
    except ValueError:
        fail(f"{path} is not a {label} file")


@backup_group.command("keygen", help="Make a backup keypair (on the offline machine).")
@click.option("--public-out", type=click.Path(path_type=Path), required=True)
@click.option("--private-out", type=click.Path(path_type=Path), required=True)
@json_option
def keygen(public_out: Path, private_out: Path, as_json: bool) -> None:
    keypair = hybrid_kem.generate_kem_keypair()
    seed = keypair.private_bytes_for_storage()
    fd = os.open(private_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(f"{_PRIVATE_LABEL}\n{seed.hex()}\n")
    public_out.write_text(f"{_PUBLIC_LABEL}\n{keypair.public_key_bytes.hex()}\n", "ascii")
    fingerprint = hybrid_kem.public_key_fingerprint(keypair.public_key_bytes)
    emit(
        as_json,
        {"fingerprint": fingerprint},
        f"backup key {hybrid_kem.format_fingerprint(fingerprint)}",
    )


@backup_group.command("create", help="Stream pg_dump sealed to the backup public key.")
@click.option("--to", "public_key_file", type=click.Path(path_type=Path), required=True)
@click.option("--output", default="-", show_default=True, help="The backup file; - for stdout.")
@_database_url
@json_option
def create(public_key_file: Path, output: str, database_url: str, as_json: bool) -> None:
    """The summary goes to stderr when the backup itself goes to stdout."""
    public_key = _read_key_file(public_key_file, _PUBLIC_LABEL)
    environment = _client_environment(database_url)
    command = [_program("pg_dump"), "--no-owner", "--no-privileges", "--format=plain"]
    to_stdout = output == "-"
    if to_stdout:
        sink: IO[bytes] = sys.stdout.buffer
    else:
        sink = Path(output).open("xb")  # noqa: SIM115 - closed below
    try:
        with subprocess.Popen(  # noqa: S603  # nosec B603 - fixed arguments, no shell
            command, stdout=subprocess.PIPE, env=environment
        ) as dump:
            if dump.stdout is None:  # pragma: no cover - stdout=PIPE
                fail("pg_dump gave no output")
            try:
                chunks = backup_stream.seal_stream(dump.stdout, sink, public_key)
            except IntegrityCheckFailed:
                dump.kill()
                fail("the backup public key is malformed or unsafe")
        sink.flush()
    finally:
        if not to_stdout:
            sink.close()
    if dump.returncode != 0:
        fail(f"pg_dump failed (exit {dump.returncode}): the backup is incomplete, discard it")
    summary = {"ok": True, "chunks": chunks}
    text = json.dumps(summary) if as_json else f"backup sealed: {chunks} chunks"
    click.echo(text, err=to_stdout)


@backup_group.command("restore", help="Open a backup with the private key into a database.")
@click.option("--key", "private_key_file", type=click.Path(path_type=Path), required=True)
@click.option("--input", "source", type=click.File("rb"), default="-", show_default=True)
@_database_url
@json_option
def restore(private_key_file: Path, source: IO[bytes], database_url: str, as_json: bool) -> None:
    seed = _read_key_file(private_key_file, _PRIVATE_LABEL)
    try:
        private_key = hybrid_kem.load_private_key(seed)
    except DecryptionFailed:
        fail(f"{private_key_file} is not a backup private key")
    environment = _client_environment(database_url)
    command = [
        _program("psql"),
        "--quiet",
        "--no-psqlrc",
        "--single-transaction",
        "--set=ON_ERROR_STOP=1",
        "--output=/dev/null",
    ]
    with subprocess.Popen(  # noqa: S603  # nosec B603 - fixed arguments, no shell
        command, stdin=subprocess.PIPE, env=environment
    ) as psql:
        if psql.stdin is None:  # pragma: no cover - stdin=PIPE
            fail("psql took no input")
        try:
            chunks = backup_stream.open_stream(source, psql.stdin, private_key)
        except (DecryptionFailed, BrokenPipeError) as error:
            psql.kill()  # before psql reads end of input: its transaction never commits
            psql.wait()
            if isinstance(error, BrokenPipeError):
                fail("psql stopped: see its message above; nothing was restored")
            fail(
                "the backup does not open with this key, or was altered or cut short: "
                "nothing was restored"
            )
        psql.stdin.close()
    if psql.returncode != 0:
        fail(f"psql failed (exit {psql.returncode}); nothing was restored")
    emit(as_json, {"ok": True, "chunks": chunks}, f"backup restored: {chunks} chunks")
