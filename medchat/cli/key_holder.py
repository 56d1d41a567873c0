"""A staff member signs in to a command: password and one-time code, as at a sign-in.

Commands that open role keys (``keys rotate``, ``rewrap``, ``reseal-content``) run with a
holder's keys: nothing on the server can open a conversation key on its own. ``medchat dpo``
signs the officer in the same way (they hold no keys).
"""

from __future__ import annotations

from typing import Any

import click

from medchat import audit
from medchat.cli.output import CLI_CONTEXT
from medchat.services.context import ServiceContext


def ask_credentials(email: str | None, who: str) -> tuple[str, str, str]:
    """E-mail (unless given), password and one-time code, prompted on stderr."""
    email = email or click.prompt(who, err=True)
    password = click.prompt("Password", hide_input=True, err=True)
    return email, password, click.prompt("One-time code", err=True)


def ask_holder(runtime: ServiceContext, email: str | None, who: str) -> Any:
    """Prompt for what is missing, then sign the holder in (``signed_in_holder``)."""
    return signed_in_holder(runtime, *ask_credentials(email, who))


def signed_in_holder(runtime: ServiceContext, email: str, password: str, code: str) -> Any:
    """The holder as a principal with the keys their password opens, after password and TOTP.

    The same checks as signing in (same failures, audited the same way); the keys stay in
    this process's memory and no session row is written.
    """
    from access_control.password_kdf import Password
    from medchat.errors import InvalidCredentials
    from medchat.identity.principal import Principal
    from medchat.models import AccountStatus
    from medchat.services.authentication import AuthenticationService

    with runtime.database.transaction() as session:
        audit.set_context(session, CLI_CONTEXT)
        authentication = AuthenticationService(session, runtime)
        typed = Password(password)
        account = authentication.check_password(email, typed, address=None)
        if not authentication.check_second_factor(account, code):
            raise InvalidCredentials("This command needs an account with two-factor sign-in.")
        if account.status != AccountStatus.ACTIVE:
            raise InvalidCredentials
        keyring = runtime.custody(session).open_keyring(account.id, typed)
        audit.record(
            session,
            "auth.login",
            target_type="account",
            target_id=account.id,
            details={"mfa": True, "via": "cli"},
        )
    return Principal.in_process(account, keyring)
