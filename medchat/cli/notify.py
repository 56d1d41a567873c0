"""``medchat notify run`` and ``medchat notify digest``: deliver notifications (issue 17 item 1).

``run`` delivers the outbox (``medchat.services.notify_worker``): by default it keeps going,
a batch whenever rows are due and a pause of ``--interval`` seconds when none is (the
``medchat-notify.service`` unit); ``--once`` delivers what is due now and exits. Safe on
every host at once: rows are claimed ``FOR UPDATE SKIP LOCKED``, each is sent by one worker,
and a delivered row is never sent again. ``digest`` queues today's digest mail to each
clinician (how many questions wait; once a day however often it runs); ``run`` sends it.
Conventions as in ``medchat.cli.output``.
"""

from __future__ import annotations

import time

import click
from flask.cli import with_appcontext

from medchat.cli.output import CLI_CONTEXT, cli_errors, emit, json_option, loaded_runtime


@click.group("notify", help="Notifications: deliver the outbox, queue the doctors' digest.")
def notify_group() -> None:
    pass


@notify_group.command("run", help="Deliver due notifications (loop; --once: what is due now).")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option("--batch", type=click.IntRange(1, 1000), default=50, help="Rows per transaction.")
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 3600),
    default=5.0,
    help="Seconds between polls when nothing is due (loop only).",
)
@json_option
@with_appcontext
@cli_errors
def notify_run(once: bool, batch: int, interval: float, as_json: bool) -> None:
    from medchat.services.notify_worker import NotifyWorker

    worker = NotifyWorker(loaded_runtime(), batch_size=batch, audit_context=CLI_CONTEXT)
    while True:
        result = worker.run()
        if once or result.handled:
            emit(
                as_json,
                result.as_dict(),
                f"notifications: {result.sent} sent, {result.skipped} skipped, "
                f"{result.failed} failed (retried later), {result.refused} refused, "
                f"{result.purged} delivered over 30 days ago deleted",
            )
        if once:
            return
        if not result.handled or result.failed == result.handled:
            time.sleep(interval)


@notify_group.command("digest", help="Queue today's digest of waiting questions for clinicians.")
@json_option
@with_appcontext
@cli_errors
def notify_digest(as_json: bool) -> None:
    from medchat.services.notify_worker import NotifyWorker

    queued = NotifyWorker(loaded_runtime(), audit_context=CLI_CONTEXT).enqueue_digest()
    emit(as_json, {"queued": queued}, f"{queued} digest mails queued")
