"""``medchat archive``: verify the sealed-archive ledger, verify an exported bundle offline, and
print the archive-signing public key a deployment pins and publishes.

``verify`` walks every record (links, hashes, signatures under the pinned key, content hashes,
the head) and exits 1 naming the first bad record; on success it prints the ledger head
(sequence and hash), which an operator records outside the database to detect a rollback of the
whole database (``docs/archive.md``). ``verify-bundle`` and ``public-key`` need no database
and no running application. Command conventions as in ``medchat.cli.output`` (``--json``, exit
codes).
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from flask.cli import with_appcontext

from medchat.cli.output import cli_errors, emit, fail, json_option, loaded_runtime

PUBLIC_KEY_ENV = "MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY"


@click.group("archive", help="The sealed-archive ledger.")
def archive_group() -> None:
    pass


@archive_group.command(
    "verify", help="Walk the ledger: links, signatures, content; name the first bad record."
)
@json_option
@with_appcontext
@cli_errors
def archive_verify(as_json: bool) -> None:
    from medchat.archive import ledger

    runtime = loaded_runtime()
    signer = runtime.archive_signer
    with runtime.database.transaction() as session:
        result = ledger.verify(session, signer.public_key, signer.head_mac_key)
    text = (
        f"archive ledger ok: {result.records} records, head {result.head_seq} {result.head_hash}"
        if result.ok
        else f"archive ledger BROKEN at record {result.first_bad} "
        f"(seq {result.first_bad_seq}): {result.reason}"
    )
    emit(as_json, result.as_dict(), text)
    if not result.ok:
        fail(
            f"archive ledger broken at record {result.first_bad} "
            f"(seq {result.first_bad_seq}): {result.reason}"
        )


@archive_group.command("verify-bundle", help="Verify an exported bundle offline.")
@click.argument("bundle_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    "public_key_hex",
    help=f"The published archive-signing key (64 hex digits); default: ${PUBLIC_KEY_ENV}.",
)
@json_option
def archive_verify_bundle(bundle_file: Path, public_key_hex: str | None, as_json: bool) -> None:
    """Never trusts the key named inside the bundle: the published key must be given."""
    from medchat.archive.bundle import BundleRejected, verify_bundle
    from medchat.archive.signing import public_key_from_hex

    public_key_hex = public_key_hex or os.environ.get(PUBLIC_KEY_ENV, "")
    if not public_key_hex:
        fail(
            f"pass --public-key (or set {PUBLIC_KEY_ENV}): the key "
            "GET /api/v1/archive/public-key publishes"
        )
    try:
        public_key = public_key_from_hex(public_key_hex)
    except ValueError:
        fail("--public-key must be 64 hex digits")
    try:
        # The bytes, as exported: only its canonical spelling verifies (``parse_bundle``).
        summary = verify_bundle(bundle_file.read_bytes(), public_key)
    except BundleRejected as exc:
        emit(as_json, {"ok": False, "reason": str(exc)}, f"bundle REJECTED: {exc}")
        fail(f"bundle rejected: {exc}")
    emit(
        as_json,
        {"ok": True, **summary.__dict__},
        f"bundle ok: record {summary.record_id} (seq {summary.seq}), conversation "
        f"{summary.conversation_id}, {summary.messages} messages, signed by {summary.fingerprint}",
    )


@archive_group.command("public-key", help="Print the archive-signing public key to pin.")
@json_option
@cli_errors
def archive_public_key(as_json: bool) -> None:
    """Reads only ``archive-signing.key`` (no database): run it after ``keys server-init`` and
    put the printed key in ``MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY`` on every host."""
    from access_control import signatures
    from access_control.crypto import DecryptionFailed
    from medchat.config import Settings

    path = Settings.from_env().key_dir / "archive-signing.key"
    if not path.exists():
        fail(f"{path} is missing: run 'medchat keys server-init' first")
    try:
        key = signatures.load_signing_key(path.read_bytes())
    except DecryptionFailed:
        fail(f"{path} does not hold a 32-byte Ed25519 seed")
    public_key = key.public_key_bytes.hex()
    fingerprint = signatures.signing_key_fingerprint(key.public_key_bytes)
    emit(
        as_json,
        {"public_key": public_key, "fingerprint": fingerprint},
        f"{PUBLIC_KEY_ENV}={public_key}\nfingerprint {fingerprint}",
    )
