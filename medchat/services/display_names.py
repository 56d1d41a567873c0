"""The names members see for staff: "Dr. M." for a clinician, never an e-mail address.

Set once at creation (``default_display_name``) and stored on the account; read in bulk by
every view that names an author or an actor (message pages, sends, the access log).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat.models import Account


def default_display_name(role: str, first_name: str, last_name: str) -> str:
    """How staff are shown to members: "Dr. A." for a clinician, never their e-mail."""
    initial = (last_name[:1] or first_name[:1]).upper()
    if role == Role.CLINICIAN:
        return f"Dr. {initial}."
    return f"{first_name} {initial}."


_DISPLAY_NAMES = select(Account.id, Account.display_name).where(
    Account.id.in_(bindparam("account_ids", expanding=True)), Account.display_name.is_not(None)
)
#: The same for one account, the common case (a doctor's send names its author): an ``IN``
#: list is an "expanding" parameter that SQLAlchemy renders to SQL again at every execution,
#: this one is compiled once (tests/api/test_hot_path_statements.py).
_DISPLAY_NAME = select(Account.id, Account.display_name).where(
    Account.id == bindparam("account_id"), Account.display_name.is_not(None)
)


def display_names(session: Session, account_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The name members see for each staff account (the stored ``display_name``, set from
    ``default_display_name`` at creation), in one prebuilt query (sends and pages call it);
    accounts without one are left out."""
    ids = list(set(account_ids))
    if not ids:
        return {}
    if len(ids) == 1:
        rows = session.execute(_DISPLAY_NAME, {"account_id": ids[0]})
    else:
        rows = session.execute(_DISPLAY_NAMES, {"account_ids": ids})
    return {account_id: name for account_id, name in rows if name is not None}
