"""``medchat keys``: server keys, role-key bootstrap, rotation and status; the re-wraps,
re-seals and the key-epoch migration are ``medchat.cli.key_upgrades``.

Commands that open role keys (``rotate``, ``rewrap``, ``reseal-content``) ask a current holder
for their password and TOTP code: nothing on the server can open a conversation key on its own.
Conventions as in ``medchat.cli.output`` (``--json``, one-line errors, exit codes).
"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from medchat import audit
from medchat.cli.key_holder import ask_credentials, signed_in_holder
from medchat.cli.output import (
    CLI_CONTEXT,
    ProgressBar,
    batch_option,
    cli_errors,
    emit,
    fail,
    json_option,
    loaded_runtime,
)


@click.group("keys", help="Key custody.")
def keys_group() -> None:
    pass


@keys_group.command("server-init", help="Create the server key files missing from MEDCHAT_KEY_DIR.")
@json_option
@cli_errors
def keys_server_init(as_json: bool) -> None:
    """Needs no application: production refuses to start until these files exist."""
    from access_control.key_directory import KEY_NAMES, load_server_keys
    from medchat.config import Settings

    directory = Settings.from_env().key_dir
    existed = {name for name in KEY_NAMES if (directory / f"{name}.key").exists()}
    load_server_keys(directory, create_missing=True)
    created = sorted(set(KEY_NAMES) - existed)
    emit(
        as_json,
        {"key_dir": str(directory), "created": created, "kept": sorted(existed)},
        f"{directory}: created {', '.join(created) or 'nothing'}; kept {len(existed)} existing",
    )


@keys_group.command(
    "check", help="Check that the service can load its keys: key files, pins (before serving)."
)
@json_option
@cli_errors
def keys_check(as_json: bool) -> None:
    """What the service checks before it serves, and nothing else: the settings, every server
    key file readable (one line naming a file that is not), the archive-signing key against its
    pin, and the role keys in the database against theirs. gunicorn's master runs it before it
    forks a worker (``deploy/gunicorn.conf.py``): a start with keys the workers could not load
    fails at once, in one line, instead of in every worker. Builds no app."""
    from medchat.config import Settings
    from medchat.services.context import build_service_context, verify_role_key_pins

    settings = Settings.from_env()
    runtime = build_service_context(settings)
    try:
        verify_role_key_pins(runtime)
    finally:
        runtime.database.dispose()
    emit(
        as_json,
        {"ok": True, "key_dir": str(settings.key_dir)},
        f"{settings.key_dir}: every key file loads and matches its pin",
    )


@keys_group.command("init", help="Create the role keys and seal them to their first holders.")
@click.option("--clinician", required=True, help="E-mail of an enrolled clinician.")
@click.option("--compliance", required=True, help="E-mail of an enrolled compliance officer.")
@json_option
@with_appcontext
@cli_errors
def keys_init(clinician: str, compliance: str, as_json: bool) -> None:
    from medchat.services.role_keys import RoleKeyService

    runtime = loaded_runtime()
    with runtime.database.transaction() as session:
        audit.set_context(session, CLI_CONTEXT)
        keys = RoleKeyService(session, runtime).initialise(clinician, compliance)
    emit(
        as_json,
        {
            "physician_key_id": str(keys.physician_key_id),
            "archive_key_id": str(keys.archive_key_id),
            "physician_fingerprint": keys.physician_fingerprint,
            "archive_fingerprint": keys.archive_fingerprint,
            "pin_file": str(runtime.pins.path),
        },
        f"physician role key {keys.physician_key_id} ({keys.physician_fingerprint})\n"
        f"archive role key   {keys.archive_key_id} ({keys.archive_fingerprint})\n"
        f"pinned in {runtime.pins.path}",
    )


@keys_group.command("rotate", help="Replace a role key: re-seal every wrap, retire the old key.")
@click.option("--role", type=click.Choice(["physician", "archive"]), required=True)
@click.option("--email", help="E-mail of a current holder of the role key (asked if missing).")
@batch_option(1000, 20_000, "Wraps re-sealed")
@click.option(
    "--prepare-only",
    is_flag=True,
    help="Pin and grant the new key, stop before activating it (copy role-pins.json first).",
)
@json_option
@with_appcontext
@cli_errors
def keys_rotate(
    role: str, email: str | None, batch: int, prepare_only: bool, as_json: bool
) -> None:
    """Nothing on the server opens a DEK alone: a current holder signs in here (password and
    one-time code) and the rotation runs with their keys. An unfinished rotation resumes.

    Under ``MEDCHAT_ROLE_KEY_PINS`` the run stops for the operator to pin the new key: the
    prompt (stdout; ``--json``: ``{"pin_required": {...}}``) names the key, who started the
    rotation and when, to confirm before pinning; exit 1 with the one-line reason."""
    from medchat.errors import RowIntegrityFailure
    from medchat.keys.rotation import PinRequired, RotationService
    from medchat.models import KeyRole

    runtime = loaded_runtime()
    credentials = ask_credentials(email, "E-mail of a current holder")
    progress = ProgressBar(enabled=not as_json, label="re-sealing wraps")
    try:
        # Inside the try: a planted grant refused while the holder's keys open is reported
        # like any other planted key row below.
        actor = signed_in_holder(runtime, *credentials)
        result = RotationService(
            runtime,
            actor,
            KeyRole(role),
            batch_size=batch,
            progress=progress,
            audit_context=audit.AuditContext(actor_id=actor.id, actor_role="cli", address="cli"),
        ).run(prepare_only=prepare_only)
    except PinRequired as stop:
        progress.close()
        request = stop.request
        emit(as_json, {"pin_required": request.as_dict()}, request.prompt())
        fail(str(stop))
    except RowIntegrityFailure as refused:
        progress.close()
        fail(
            f"{refused} ({refused.table or 'a key row'}): it was written around the service. "
            "Nothing was pinned, granted or sealed; pin no key this run named, and see the "
            "integrity.row_refused audit entry (docs/security.md, 'Rotate a role key')"
        )
    finally:
        progress.close()
    if result.retired:
        text = f"v{result.from_version} retired" + ("" if result.unpin else " and unpinned")
    elif result.activated:
        text = "stopped before the end; run the command again to resume"
    else:
        text = f"v{result.to_version} pinned and granted, not active yet; run again to activate"
    emit(
        as_json,
        {
            "role": result.role,
            "from_version": result.from_version,
            "to_version": result.to_version,
            "resealed": result.resealed,
            "grants": result.grants,
            "retired": result.retired,
        },
        f"{result.role} role key v{result.from_version} -> v{result.to_version} "
        f"({result.fingerprint}): {result.resealed} wraps re-sealed, {result.grants} grants; "
        + text,
    )
    if result.unpin:
        click.echo(
            f"note: remove {result.role}:{result.unpin} from MEDCHAT_ROLE_KEY_PINS on every host",
            err=True,
        )


@keys_group.command("status", help="Role-key versions: wraps, holders, rotations due and running.")
@json_option
@with_appcontext
@cli_errors
def keys_status(as_json: bool) -> None:
    from medchat.keys.status import key_status

    runtime = loaded_runtime()
    with runtime.database.transaction() as session:
        status = key_status(session, runtime.custody(session), runtime.settings.rotation_deadline)
        now = runtime.clock.now()
    lines = []
    for v in status.versions:
        line = (
            f"{v.role:<9} v{v.version:<3} {v.status:<8} {v.fingerprint[:16]}  "
            f"pinned: {'yes' if v.pinned else 'no':<3}  wraps: {v.wraps:<8} holders: {v.holders}"
        )
        if v.status == "successor":
            line += "  new epochs sealed here until 'medchat keys rotate' retires it"
        if v in status.due():
            line += f"  ROTATION DUE since {v.rotation_due_since} ({v.rotation_due_reason})"
            if v.status == "active" and v.rotation_deadline is not None:
                late = v.rotation_deadline <= now
                line += (
                    f"; OVERDUE: new content refused since {v.rotation_deadline}"
                    if late
                    else f"; new content refused from {v.rotation_deadline}"
                )
        lines.append(line)
    for r in status.rotations:
        state = "re-sealing" if r.activated_at else "not active yet"
        lines.append(
            f"rotation {r.role} v{r.from_version} -> v{r.to_version} ({state}): "
            f"{r.resealed} re-sealed, {r.remaining} left; 'medchat keys rotate' resumes it"
        )
    if status.epochs_to_migrate:
        lines.append(
            f"{status.epochs_to_migrate} conversations wait for their key epoch record: "
            "'medchat keys migrate-epochs'"
        )
    emit(as_json, status.as_dict(), "\n".join(lines) or "no role keys yet (medchat keys init)")


# The commands that re-seal stored key material in bulk: a module of their own.
from medchat.cli import key_upgrades  # noqa: E402, F401
