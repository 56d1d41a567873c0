"""``medchat retention run``: destroy what retention says is due (daily, from cron or a timer).

SECURITY-MODEL "Deletion, sealed archive, retention"; the work is
``medchat.services.retention.RetentionService``'s (batches, row locks, audit). Safe to start on
several hosts at once: each item is handled by one of them. ``--as-of`` decides what is due as
of another time than now: an earlier one for a run, any time for ``--dry-run``, which lists
what would go and changes nothing (a run as of a later time would destroy early: refused).
Conventions as in ``medchat.cli.output`` (``--json`` prints one object; a bad argument exits 2 with
a one-line reason and changes nothing).

The same run then deletes expired token rows (``medchat.services.token_purge``: sessions,
refresh tokens past their family, used or expired reset and enrollment tokens) as of the same
time, and retired personal keys nothing is sealed to any more (``medchat.services
.retired_keys``: their blobs open with an old password), and prints their counts beside
retention's (a dry run counts them and deletes nothing).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
from flask.cli import with_appcontext

from medchat.cli.output import (
    CLI_CONTEXT,
    ProgressBar,
    cli_errors,
    emit,
    fail,
    json_option,
    loaded_runtime,
)
from medchat.clock import iso_z

AS_OF_EXAMPLE = "2029-01-01T00:00:00Z"


def parse_as_of(value: str) -> datetime:
    """An ISO 8601 time with its zone (``Z`` or ``+01:00``); raises ``ValueError`` otherwise."""
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("no time zone")
    return parsed


@click.group("retention", help="Retention: destroy expired conversations and archive records.")
def retention_group() -> None:
    pass


@retention_group.command("run", help="Destroy (or seal) everything due; idempotent.")
@click.option("--dry-run", is_flag=True, help="List what would go; change nothing.")
@click.option(
    "--as-of",
    "as_of",
    help=f"Decide what is due as of this time ({AS_OF_EXAMPLE}); later than now: --dry-run only.",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 20_000),
    default=None,
    help="Items per transaction (default: MEDCHAT_RETENTION_BATCH).",
)
@json_option
@with_appcontext
@cli_errors
def retention_run(dry_run: bool, as_of: str | None, batch: int | None, as_json: bool) -> None:
    from medchat.services.retention import EarlyDestruction, RetentionService
    from medchat.services.retired_keys import RetiredKeySweep
    from medchat.services.token_purge import TokenPurge

    moment = None
    if as_of is not None:
        try:
            moment = parse_as_of(as_of)
        except ValueError:
            fail(f"--as-of {as_of!r} is not an ISO 8601 time with a zone, like {AS_OF_EXAMPLE}", 2)
    runtime = loaded_runtime()
    progress = ProgressBar(enabled=not as_json and not dry_run, label="retention: items handled")
    service = RetentionService(
        runtime, batch_size=batch, progress=progress, audit_context=CLI_CONTEXT
    )
    try:
        result = service.run(moment, dry_run=dry_run)
    except EarlyDestruction as refused:
        fail(f"--as-of: {refused}; preview it with --dry-run", 2)
    finally:
        progress.close()
    purge = TokenPurge(runtime, batch_size=service.batch_size, audit_context=CLI_CONTEXT)
    tokens = purge.count_due(result.as_of) if dry_run else purge.run(result.as_of)
    sweep = RetiredKeySweep(runtime, batch_size=service.batch_size, audit_context=CLI_CONTEXT)
    retired_keys = sweep.count_due() if dry_run else sweep.run()
    as_of_text = iso_z(result.as_of)
    payload: dict[str, Any] = {
        **result.counts(),
        "archive_records_refused": result.archive_records_refused,
        "live_refused": result.live_refused,
        "skipped_busy": result.skipped_busy,
        "as_of": as_of_text,
        "dry_run": dry_run,
        "seal_expired": service.seal_expired,
        **{f"{name}_deleted": count for name, count in tokens.as_dict().items()},
        "retired_personal_keys_deleted": retired_keys,
    }
    if dry_run:
        payload["due"] = [item.as_dict() for item in result.due]
    verb = "would be" if dry_run else "were"
    lines = [
        f"as of {as_of_text}: {result.conversations_destroyed} conversations {verb} destroyed, "
        f"{result.conversations_sealed} sealed into the archive, "
        f"{result.archive_records_destroyed} archive records' content destroyed",
        f"{tokens.total} expired token rows {verb} deleted ({tokens.auth_tokens} sessions and "
        f"tokens, {tokens.old_keyring_tokens} sessions with an old keyring, "
        f"{tokens.password_reset_tokens} password-reset, {tokens.enrollment_tokens} "
        f"enrollment and {tokens.email_change_tokens} e-mail-change tokens)",
        f"{retired_keys} retired personal keys nothing is sealed to any more {verb} deleted",
    ]
    if dry_run:
        lines += [
            f"  {item.kind:<15} conversation {item.conversation_id}"
            + (f" record {item.record_id}" if item.record_id else "")
            + f" due since {item.as_dict()['due_at']}"
            for item in result.due
        ]
    if result.archive_records_refused:
        lines.append(
            f"{result.archive_records_refused} archive records fail their integrity check and "
            "were left in place: run 'medchat archive verify'"
        )
    if result.live_refused:
        lines.append(
            f"{result.live_refused} conversations were left in place: their question time "
            "was moved (the audit trail says later); run 'medchat audit verify'"
        )
    if result.skipped_busy:
        lines.append(
            f"{result.skipped_busy} items were busy (a rotation?); the next run takes them"
        )
    emit(as_json, payload, "\n".join(lines))
    if result.archive_records_refused:
        fail(f"{result.archive_records_refused} archive records fail their integrity check")
    if result.live_refused:
        fail(f"{result.live_refused} conversations have a moved question time")
