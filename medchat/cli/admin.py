"""``medchat create-admin``: the first admin of a new installation, and its enrollment token."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from medchat import audit
from medchat.cli.output import CLI_CONTEXT, cli_errors, emit, fail, json_option, loaded_runtime


@click.command("create-admin", help="Create the first admin and print its enrollment token.")
@click.option("--email", required=True)
@click.option("--first-name", required=True)
@click.option("--last-name", required=True)
@click.option(
    "--additional",
    is_flag=True,
    help="Create another admin although one exists (audited as an additional admin).",
)
@json_option
@with_appcontext
@cli_errors
def create_admin(
    email: str, first_name: str, last_name: str, additional: bool, as_json: bool
) -> None:
    from medchat.services.accounts import AccountService

    checked = _staff_fields(email=email, first_name=first_name, last_name=last_name)
    runtime = loaded_runtime()
    with runtime.database.transaction() as session:
        audit.set_context(session, CLI_CONTEXT)
        account, token = AccountService(session, runtime).create_admin(
            **checked, additional=additional
        )
    emit(
        as_json,
        {"id": str(account.id), "enrollment_token": token},
        f"admin created: {account.id}\none-time enrollment token (shown once): {token}",
    )


def _staff_fields(**values: str) -> dict[str, str]:
    """The admin API's rules for a staff account (``StaffCreateSchema``: a real e-mail
    address, names of 1 to 100 characters), applied to the command's options; a failure exits
    1 naming the option."""
    import marshmallow as ma

    from medchat.schemas.admin import StaffCreateSchema

    try:
        loaded = StaffCreateSchema().load({**values, "role": "admin"})
    except ma.ValidationError as exc:
        messages = exc.normalized_messages()
        field = sorted(messages)[0]
        reasons = messages[field]
        reason = reasons[0] if isinstance(reasons, list) else str(reasons)
        fail(f"--{field.replace('_', '-')}: {reason}")
    return {name: loaded[name] for name in values}
