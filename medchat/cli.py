"""The ``medchat`` command: migrations, bootstrap, verification, local demo.

Every command takes ``--json`` and then prints one JSON object on stdout; without it, text for
people. Success exits 0; a failure exits non-zero with a one-line reason on stderr
(API.md "Bootstrap and operations").
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from medchat import audit
from medchat.errors import ConfigurationError, MedchatError
from medchat.runtime import Runtime

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def _runtime() -> Runtime:
    return current_app.extensions["medchat"]  # type: ignore[no-any-return]


def emit(as_json: bool, payload: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(payload, default=str) if as_json else text)


def fail(reason: str, code: int = 1) -> None:
    click.echo(f"error: {reason}", err=True)
    sys.exit(code)


def cli_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn domain and configuration errors into a one-line reason and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (MedchatError, ConfigurationError) as exc:
            fail(str(exc) or exc.__class__.__name__)

    return wrapper


CLI_CONTEXT = audit.AuditContext(actor_role="cli", address="cli")


@click.group("db", help="Database schema.")
def db_group() -> None:
    pass


@db_group.command("upgrade", help="Apply the Alembic migrations (idempotent).")
@json_option
@with_appcontext
@cli_errors
def db_upgrade(as_json: bool) -> None:
    from medchat.migrate import upgrade

    upgrade(_runtime().settings.database_url)
    emit(as_json, {"ok": True}, "database is up to date")


@click.command("create-admin", help="Create the first admin and print its enrollment token.")
@click.option("--email", required=True)
@click.option("--first-name", required=True)
@click.option("--last-name", required=True)
@json_option
@with_appcontext
@cli_errors
def create_admin(email: str, first_name: str, last_name: str, as_json: bool) -> None:
    from access_control.roles import Role
    from medchat.services.accounts import AccountService

    runtime = _runtime()
    with runtime.database.transaction() as session:
        audit.set_context(session, CLI_CONTEXT)
        account, token = AccountService(session, runtime).create_staff(
            email=email, role=Role.ADMIN, first_name=first_name, last_name=last_name
        )
    emit(
        as_json,
        {"id": str(account.id), "enrollment_token": token},
        f"admin created: {account.id}\none-time enrollment token (shown once): {token}",
    )


@click.group("audit", help="The audit trail.")
def audit_group() -> None:
    pass


@audit_group.command("verify", help="Walk the hash chain; name the first broken entry.")
@json_option
@with_appcontext
@cli_errors
def audit_verify(as_json: bool) -> None:
    runtime = _runtime()
    with runtime.database.transaction() as session:
        result = audit.verify(session, runtime.keys.audit_mac)
    text = (
        f"audit chain ok: {result.entries} entries, head {result.head_seq} {result.head_hash}"
        if result.ok
        else f"audit chain BROKEN at entry {result.first_bad}: {result.reason}"
    )
    emit(as_json, result.as_dict(), text)
    if not result.ok:
        fail(f"audit chain broken at entry {result.first_bad}: {result.reason}")


@click.command("demo", help="Create demo accounts for local use and print how to sign in.")
@json_option
@with_appcontext
@cli_errors
def demo(as_json: bool) -> None:
    from medchat.demo import seed_demo

    runtime = _runtime()
    if runtime.settings.is_production:
        fail("demo accounts are refused in production")
    with runtime.database.transaction() as session:
        audit.set_context(session, CLI_CONTEXT)
        accounts = seed_demo(session, runtime)
    if as_json:
        emit(True, {"accounts": accounts}, "")
        return
    lines = ["Demo accounts (local use only):"]
    for item in accounts:
        line = f"  {item['role']:<11} {item['email']:<28} password: {item['password']}"
        if item.get("totp_secret"):
            line += f"  TOTP secret: {item['totp_secret']}"
        lines.append(line)
    base = runtime.settings.public_base_url
    lines += [
        "Staff sign in with a TOTP code: .venv/bin/python -m medchat.totp_code SECRET",
        f"Doctor's console: {base}/console/login (the member's question is waiting there)",
        f"Member API: POST {base}/api/v1/auth/token, then GET {base}/api/v1/conversations",
    ]
    click.echo("\n".join(lines))


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


@keys_group.command("init", help="Create the role keys and seal them to their first holders.")
@click.option("--clinician", required=True, help="E-mail of an enrolled clinician.")
@click.option("--compliance", required=True, help="E-mail of an enrolled compliance officer.")
@json_option
@with_appcontext
@cli_errors
def keys_init(clinician: str, compliance: str, as_json: bool) -> None:
    from medchat.services.role_keys import RoleKeyService

    runtime = _runtime()
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


class _ReSealProgress:
    """A progress bar on stderr, drawn from the first batch on (when the total is known)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = click.progressbar(
                length=max(total, 1),
                label="re-sealing wraps",
                show_pos=True,
                file=sys.stderr,
            )
            self.bar.__enter__()
        self.bar.length = max(self.bar.length, total)
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _signed_in_holder(runtime: Runtime, email: str, password: str, code: str) -> Any:
    """The holder as a principal with the keys their password opens, after password and TOTP.

    The same checks as signing in (same failures, audited the same way); the keys stay in
    this process's memory and no session row is written.
    """
    from access_control.principal import Principal
    from medchat.errors import InvalidCredentials
    from medchat.models import AccountStatus
    from medchat.services.authentication import AuthenticationService

    with runtime.database.transaction() as session:
        audit.set_context(session, CLI_CONTEXT)
        authentication = AuthenticationService(session, runtime)
        account = authentication.check_password(email, password)
        if not authentication.check_second_factor(account, code):
            raise InvalidCredentials("This command needs an account with two-factor sign-in.")
        if account.status != AccountStatus.ACTIVE:
            raise InvalidCredentials
        keyring = runtime.custody(session).open_keyring(account.id, password)
        audit.record(
            session,
            "auth.login",
            target_type="account",
            target_id=account.id,
            details={"mfa": True, "via": "cli"},
        )
    return Principal.in_process(account, keyring)


@keys_group.command("rotate", help="Replace a role key: re-seal every wrap, retire the old key.")
@click.option("--role", type=click.Choice(["physician", "archive"]), required=True)
@click.option("--email", help="E-mail of a current holder of the role key (asked if missing).")
@click.option(
    "--batch",
    type=click.IntRange(1, 20_000),
    default=1000,
    show_default=True,
    help="Wraps re-sealed per transaction.",
)
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
    one-time code) and the rotation runs with their keys. An unfinished rotation resumes."""
    from medchat.models import KeyRole
    from medchat.services.rotation import RotationService

    runtime = _runtime()
    email = email or click.prompt("E-mail of a current holder", err=True)
    password = click.prompt("Password", hide_input=True, err=True)
    code = click.prompt("One-time code", err=True)
    actor = _signed_in_holder(runtime, email, password, code)
    progress = _ReSealProgress(enabled=not as_json)
    try:
        result = RotationService(
            runtime,
            actor,
            KeyRole(role),
            batch_size=batch,
            progress=progress,
            audit_context=audit.AuditContext(actor_id=actor.id, actor_role="cli", address="cli"),
        ).run(prepare_only=prepare_only)
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
    from medchat.services.role_key_status import key_status

    runtime = _runtime()
    with runtime.database.transaction() as session:
        status = key_status(session, runtime.custody(session))
    lines = []
    for v in status.versions:
        line = (
            f"{v.role:<9} v{v.version:<3} {v.status:<8} {v.fingerprint[:16]}  "
            f"pinned: {'yes' if v.pinned else 'no':<3}  wraps: {v.wraps:<8} holders: {v.holders}"
        )
        if v in status.due():
            line += f"  ROTATION DUE since {v.rotation_due_since} ({v.rotation_due_reason})"
        lines.append(line)
    for r in status.rotations:
        state = "re-sealing" if r.activated_at else "not active yet"
        lines.append(
            f"rotation {r.role} v{r.from_version} -> v{r.to_version} ({state}): "
            f"{r.resealed} re-sealed, {r.remaining} left; 'medchat keys rotate' resumes it"
        )
    emit(as_json, status.as_dict(), "\n".join(lines) or "no role keys yet (medchat keys init)")


@keys_group.command("rewrap", help="Re-seal members' histories after password resets.")
@click.option("--email", help="E-mail of a clinician holding the physician key (asked if missing).")
@click.option("--batch", type=click.IntRange(1, 10_000), default=200, show_default=True)
@json_option
@with_appcontext
@cli_errors
def keys_rewrap(email: str | None, batch: int, as_json: bool) -> None:
    """Drain the whole re-wrap queue with a clinician's keys (password and one-time code are
    asked), for when no clinician request drains it in passing. Exit 1 if some stay queued."""
    from medchat.services.rewrap import DrainResult, RewrapQueue

    runtime = _runtime()
    email = email or click.prompt("E-mail of a clinician", err=True)
    password = click.prompt("Password", hide_input=True, err=True)
    actor = _signed_in_holder(runtime, email, password, click.prompt("One-time code", err=True))
    context = audit.AuditContext(actor_id=actor.id, actor_role="cli", address="cli")
    total, remaining = DrainResult(), 0
    while True:
        with runtime.database.transaction() as session:
            audit.set_context(session, context)
            step = RewrapQueue(session, runtime).drain(actor, batch)
            remaining = RewrapQueue(session, runtime).pending()
        total.add(step)
        if not as_json:
            click.echo(f"re-sealed {total.rewrapped}, {remaining} waiting", err=True)
        if not step.progressed or remaining == 0:
            break
    summary = {**vars(total), "remaining": remaining}
    emit(as_json, summary, f"{total.rewrapped} conversations re-sealed, {remaining} waiting")
    if remaining:
        fail(f"{remaining} conversations stay queued (see the log for why)")


def register_commands(app: Flask) -> None:
    from medchat.archive_commands import archive_group

    for command in (db_group, create_admin, audit_group, demo, keys_group, archive_group):
        app.cli.add_command(command)


def _create_app() -> Flask:
    from medchat.app import create_app

    return create_app(check_pins=False)


def main() -> None:
    """Entry point of the ``medchat`` console script."""
    try:
        group = FlaskGroup(
            create_app=_create_app, add_default_commands=True, add_version_option=False
        )
        # Usable before the app can start (production refuses to start without keys).
        group.add_command(keys_group)
        # ``archive verify-bundle`` and ``archive public-key`` need no database either.
        from medchat.archive_commands import archive_group

        group.add_command(archive_group)
        group.main(prog_name="medchat")
    except ConfigurationError as exc:
        fail(str(exc))
