"""``medchat dpo``: the data protection officer acts on a mailed request from the command line.

The same acts as ``/api/v1/dpo`` (``medchat.services.dpo``), for an officer who works from a
staff host: the officer's password and one-time code are asked (the sign-in checks, audited
as a CLI sign-in), the member is named by address and the request by its ticket, and nothing
printed holds content or a profile value. Exit 1 with the reason when refused (unknown member,
bad field, wrong password).
"""

from __future__ import annotations

from typing import Any

import click
from flask.cli import with_appcontext

from access_control.roles import Role
from medchat import audit
from medchat.cli.key_holder import ask_holder
from medchat.cli.output import cli_errors, emit, fail, json_option, loaded_runtime
from medchat.errors import Forbidden

dpo_group = click.Group("dpo", help="Act for a member on a request the DPO received by mail.")

_member = click.option("--member", "member", required=True, help="The member's e-mail address.")
_ticket = click.option("--ticket", required=True, help="The request's ticket reference.")
_officer = click.option("--email", help="The officer's e-mail (asked if missing).")


def _act(officer: str | None, act: Any) -> Any:
    """Run ``act(service, actor)`` in one transaction as the signed-in officer."""
    from medchat.services.dpo import DpoService

    runtime = loaded_runtime()
    actor = ask_holder(runtime, officer, "E-mail of the data protection officer")
    if actor.role != Role.DPO:
        raise Forbidden("Only the data protection officer acts on members' requests.")
    context = audit.AuditContext(actor_id=actor.id, actor_role=Role.DPO, address="cli")
    with runtime.database.transaction() as session:
        audit.set_context(session, context)
        result = act(DpoService(session, runtime), actor)
    runtime.postman.wait()
    return result


def _check(member: str, ticket: str, **extra: Any) -> dict[str, Any]:
    from marshmallow import ValidationError

    from medchat.schemas.dpo import DpoRectificationSchema, DpoRequestSchema

    schema = DpoRectificationSchema() if "changes" in extra else DpoRequestSchema()
    try:
        return schema.load({"email": member, "ticket": ticket, **extra})  # type: ignore[no-any-return]
    except ValidationError as error:
        fail(f"invalid request: {error.messages}")


@dpo_group.command("export", help="Tell the member their export waits in the app.")
@_member
@_ticket
@_officer
@json_option
@with_appcontext
@cli_errors
def dpo_export(member: str, ticket: str, email: str | None, as_json: bool) -> None:
    data = _check(member, ticket)
    _act(email, lambda service, actor: service.export(actor, data["email"], data["ticket"]))
    emit(as_json, {"status": "notified", "ticket": ticket}, f"{ticket}: the member was told")


@dpo_group.command("erase", help="Erase the member's account (as their own request would).")
@_member
@_ticket
@_officer
@click.option("--yes", is_flag=True, required=True, help="Confirm the erasure.")
@json_option
@with_appcontext
@cli_errors
def dpo_erase(member: str, ticket: str, email: str | None, yes: bool, as_json: bool) -> None:
    if not yes:  # pragma: no cover - click refuses a missing required flag
        fail("--yes confirms the erasure")
    data = _check(member, ticket)
    _act(email, lambda service, actor: service.erase(actor, data["email"], data["ticket"]))
    emit(as_json, {"status": "deleted", "ticket": ticket}, f"{ticket}: the account was erased")


@dpo_group.command("restriction", help="Restrict processing, lift it, or record an objection.")
@click.argument("action", type=click.Choice(["restrict", "lift", "object"]))
@_member
@_ticket
@_officer
@json_option
@with_appcontext
@cli_errors
def dpo_restriction(
    action: str, member: str, ticket: str, email: str | None, as_json: bool
) -> None:
    data = _check(member, ticket)
    state = _act(
        email,
        lambda service, actor: service.restriction(actor, data["email"], data["ticket"], action),
    )
    emit(
        as_json,
        {"ticket": ticket, "restricted": state.restricted, "ground": state.ground},
        f"{ticket}: restricted={state.restricted} ground={state.ground}",
    )


@dpo_group.command("rectify", help="Correct profile fields: --set FIELD=VALUE, repeated.")
@_member
@_ticket
@_officer
@click.option("--set", "pairs", multiple=True, required=True, metavar="FIELD=VALUE")
@json_option
@with_appcontext
@cli_errors
def dpo_rectify(
    member: str, ticket: str, email: str | None, pairs: tuple[str, ...], as_json: bool
) -> None:
    changes = dict(pair.partition("=")[::2] for pair in pairs)
    data = _check(member, ticket, changes=changes)
    changed = _act(
        email,
        lambda service, actor: service.rectify(
            actor, data["email"], data["ticket"], data["changes"]
        ),
    )
    emit(as_json, {"ticket": ticket, "fields": changed}, f"{ticket}: changed {', '.join(changed)}")
