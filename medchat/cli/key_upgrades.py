"""``medchat keys rewrap | reseal-content | migrate-epochs``: stored key material brought up
to date in bulk, in batches, resumably, while the service runs.

``rewrap`` and ``reseal-content`` open conversation keys, so they run with a clinician's keys
(``medchat.cli.key_holder``); ``migrate-epochs`` opens nothing. Conventions as in
``medchat.cli.output`` (``--json``, one-line errors, exit codes).
"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from medchat import audit
from medchat.cli.key_holder import ask_holder
from medchat.cli.keys import keys_group
from medchat.cli.output import (
    ProgressBar,
    batch_option,
    cli_errors,
    emit,
    fail,
    json_option,
    loaded_runtime,
    max_batches_option,
)


@keys_group.command("rewrap", help="Re-seal members' histories after password resets.")
@click.option("--email", help="E-mail of a clinician holding the physician key (asked if missing).")
@batch_option(200, 10_000, "Conversations re-sealed")
@json_option
@with_appcontext
@cli_errors
def keys_rewrap(email: str | None, batch: int, as_json: bool) -> None:
    """Drain the whole re-wrap queue with a clinician's keys (password and one-time code are
    asked), for when no clinician request drains it in passing. Exit 1 if some stay queued."""
    from medchat.keys.member_rewrap import DrainResult, RewrapQueue

    runtime = loaded_runtime()
    actor = ask_holder(runtime, email, "E-mail of a clinician")
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


@keys_group.command(
    "reseal-content", help="Re-seal older conversations' content to the current binding."
)
@click.option("--email", help="E-mail of a clinician holding the physician key (asked if missing).")
@batch_option(100, 10_000, "Conversations re-sealed")
@max_batches_option
@json_option
@with_appcontext
@cli_errors
def keys_reseal_content(
    email: str | None, batch: int, max_batches: int | None, as_json: bool
) -> None:
    """Bind every live conversation's content to its author, order and placement (format 2)
    with a clinician's keys (password and one-time code are asked): nothing on the server opens
    a DEK alone. Resumes where it stopped; exit 1 if some conversations are refused."""
    from medchat.keys.content_upgrade import ContentResealer

    runtime = loaded_runtime()
    actor = ask_holder(runtime, email, "E-mail of a clinician")
    progress = ProgressBar(enabled=not as_json, label="re-sealing content")
    try:
        result = ContentResealer(
            runtime,
            actor,
            batch_size=batch,
            progress=progress,
            audit_context=audit.AuditContext(actor_id=actor.id, actor_role="cli", address="cli"),
        ).run(max_batches=max_batches)
    finally:
        progress.close()
    refused = len(result.refused)
    summary = {
        "resealed": result.resealed,
        "refused": [str(i) for i in result.refused],
        "remaining": result.remaining,
        "finished": result.finished,
    }
    text = f"{result.resealed} conversations re-sealed, {result.remaining} left in format 1"
    if not result.finished:
        text += "; stopped by --max-batches, run again to resume"
    emit(as_json, summary, text)
    if refused:
        fail(
            f"{refused} conversations were refused and stay in format 1 "
            "(see the content.reseal_refused audit entries)"
        )


@keys_group.command(
    "migrate-epochs", help="Record the first key epoch of conversations from before epochs."
)
@batch_option(500, 10_000, "Conversations")
@max_batches_option
@json_option
@with_appcontext
@cli_errors
def keys_migrate_epochs(batch: int, max_batches: int | None, as_json: bool) -> None:
    """Write the epoch-1 row of every conversation created before migration 0016, in batches,
    while the service runs; needs the key directory, no password (nothing is opened). Resumes
    where it stopped; exit 1 if some conversations are refused (their key set fails)."""
    from medchat.keys.epoch_migration import EpochMigration

    runtime = loaded_runtime()
    progress = ProgressBar(enabled=not as_json, label="recording key epochs")
    context = audit.AuditContext(actor_role="cli", address="cli")
    try:
        result = EpochMigration(runtime, batch_size=batch, audit_context=context).run(
            max_batches=max_batches, progress=progress
        )
    finally:
        progress.close()
    summary = {
        "migrated": result.migrated,
        "refused": [str(i) for i in result.refused],
        "remaining": result.remaining,
        "finished": result.finished,
    }
    text = f"{result.migrated} conversations given their epoch record, {result.remaining} left"
    if not result.finished:
        text += "; run again to resume"
    emit(as_json, summary, text)
    if result.refused:
        fail(
            f"{len(result.refused)} conversations were refused: their key set fails its tag "
            "(see the key_epochs.migrate_refused audit entries)"
        )
