"""``medchat audit``: verify the hash chain (against a signed anchor), sign anchors, and print
the anchor key's public half.

``verify`` walks every entry and names the first broken one; with ``--anchor FILE`` it also
checks the chain against the latest anchor of that file (``medchat.audit.anchor``), which
catches a truncation followed by an older, genuine head put back. ``anchor`` signs the current
head and prints it as one JSON line (``--json``: the line is the anchor document itself, ready
for a log shipper) and, with ``--output FILE``, appends it to that file after checking that
the chain still holds the file's latest anchor. ``anchor-public-key`` reads only the key file.
Command conventions as in ``medchat.cli.output`` (``--json``, exit codes).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import click
from flask.cli import with_appcontext

from medchat import audit
from medchat.audit import anchor as audit_anchor
from medchat.audit.anchor import AnchorRejected, AnchorSigner
from medchat.cli.output import CLI_CONTEXT, cli_errors, emit, fail, json_option, loaded_runtime
from medchat.services.audit_log import AuditLogService

_ANCHOR_FILE = click.Path(dir_okay=False, path_type=Path)
#: A ticket reference is a code, never a name: it goes into the audit entry's details.
_TICKET = re.compile(r"[A-Za-z0-9_./-]{1,64}")


@click.group("audit", help="The audit trail.")
def audit_group() -> None:
    pass


def _anchors_in(path: Path, signer: AnchorSigner) -> audit_anchor.Anchor | None:
    """The latest anchor of ``path``, every signature checked (``AnchorRejected`` names the
    file and the line or anchor at fault)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnchorRejected(f"{path}: cannot be read ({type(exc).__name__})") from None
    try:
        return audit_anchor.latest_verified(audit_anchor.read_anchors(text), signer)
    except AnchorRejected as exc:
        raise AnchorRejected(f"{path}: {exc}") from None


@audit_group.command("verify", help="Walk the hash chain; name the first broken entry.")
@click.option(
    "--anchor",
    "anchor_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also check the chain against the latest signed anchor in this file.",
)
@json_option
@with_appcontext
@cli_errors
def audit_verify(anchor_file: Path | None, as_json: bool) -> None:
    runtime = loaded_runtime()
    checked = None
    with runtime.database.transaction() as session:
        result = audit.verify(session, runtime.keys.audit_mac)
        if anchor_file is not None and result.ok:
            try:
                anchor = _anchors_in(anchor_file, AnchorSigner(runtime.keys.audit_anchor))
            except AnchorRejected as exc:
                result.ok, result.reason = False, f"anchor rejected: {exc}"
            else:
                if anchor is None:
                    result.ok, result.reason = False, f"{anchor_file} holds no anchor"
                else:
                    audit_anchor.verify_against(session, result, anchor)
                    checked = audit_anchor.summary(anchor)
    anchored = (
        f", anchor of {checked['anchored_at']} ({checked['seq']} entries) checked"
        if checked and result.ok
        else ""
    )
    text = (
        f"audit chain ok: {result.entries} entries, head {result.head_seq} {result.head_hash}"
        f"{anchored}"
        if result.ok
        else f"audit chain BROKEN at entry {result.first_bad}: {result.reason}"
    )
    emit(as_json, {**result.as_dict(), "anchor": checked if result.ok else None}, text)
    if not result.ok:
        where = f" at entry {result.first_bad}" if result.first_bad is not None else ""
        fail(f"audit chain broken{where}: {result.reason}")


@audit_group.command("anchor", help="Sign the chain heads; print them (and append them to a file).")
@click.option(
    "--output",
    type=_ANCHOR_FILE,
    help="Append the anchor to this file (JSON lines), after checking the chain against the "
    "file's latest anchor.",
)
@json_option
@with_appcontext
@cli_errors
def audit_anchor_command(output: Path | None, as_json: bool) -> None:
    """Exits 1 without signing when the head fails its check or the chain no longer holds the
    latest anchor of ``--output``: a truncated chain is reported, never anchored."""
    runtime = loaded_runtime()
    try:
        signer = AnchorSigner(runtime.keys.audit_anchor)
        previous = _anchors_in(output, signer) if output is not None and output.exists() else None
        with runtime.database.transaction() as session:
            anchor = signer.sign_heads(session, runtime.keys.audit_mac, runtime.clock.now())
            if previous is not None:
                lengths = {head.chain: head.seq for head in anchor.heads}
                audit_anchor.check_chain(session, previous, lengths)
    except AnchorRejected as exc:
        fail(f"audit chain not anchored: {exc}")
    line = anchor.as_line()
    if output is not None:
        _append(output, line)
    where = f"; appended to {output}" if output is not None else ""
    emit(
        as_json,
        anchor.as_document(),
        f"audit chains anchored at {anchor.seq} entries over {len(anchor.heads)} "
        f"head(s) ({anchor.anchored_at}){where}\n{line}",
    )


def _append(path: Path, line: str) -> None:
    """One whole line per anchor, on disk before the command reports success."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


@audit_group.command("anchor-public-key", help="Print the public key that verifies anchors.")
@json_option
@cli_errors
def audit_anchor_public_key(as_json: bool) -> None:
    """Reads only ``audit-anchor.key`` (no database): for whoever checks anchors elsewhere."""
    from medchat.config import Settings

    path = Settings.from_env().key_dir / "audit-anchor.key"
    if not path.exists():
        fail(f"{path} is missing: run 'medchat keys server-init' first")
    try:
        signer = AnchorSigner(path.read_bytes())
    except AnchorRejected as exc:
        fail(str(exc))
    emit(
        as_json,
        {"public_key": signer.public_key.hex(), "fingerprint": signer.fingerprint},
        f"audit anchor public key {signer.public_key.hex()}\nfingerprint {signer.fingerprint}",
    )


@audit_group.command(
    "identify",
    help="Name the member behind a pseudonymised audit entry (audited, with the ticket).",
)
@click.argument("seq", type=click.IntRange(min=1))
@click.option(
    "--ticket",
    required=True,
    help="The request this lookup answers (a DPO or court ticket: letters, digits, -_/.).",
)
@json_option
@with_appcontext
@cli_errors
def audit_identify(seq: int, ticket: str, as_json: bool) -> None:
    """The audited way to the member id behind an admin view's pseudonym (docs/security.md,
    "Who sees members in the audit"); the lookup shows in that member's access log."""
    if not _TICKET.fullmatch(ticket):
        fail("--ticket must be 1 to 64 letters, digits or -_/.")
    runtime = loaded_runtime()
    with runtime.database.transaction() as session:
        audit.set_context(session, CLI_CONTEXT)
        member = AuditLogService(session, runtime).identify(seq, ticket)
    emit(
        as_json,
        {"seq": seq, "member_id": None if member is None else str(member)},
        f"entry {seq}: " + ("about no member" if member is None else f"member {member}"),
    )
