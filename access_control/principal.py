"""The authenticated caller of one request: an account, its token, and what it proved."""

from __future__ import annotations

import uuid

from flask_login import UserMixin

from access_control.roles import requires_mfa
from medchat.models import Account, AuthToken


class Principal(UserMixin):
    """What Flask-Login's ``current_user`` is for a signed-in request."""

    def __init__(self, account: Account, token: AuthToken) -> None:
        self.account = account
        self.token = token

    def __repr__(self) -> str:
        return f"Principal(account={self.account.id}, role={self.account.role})"

    def __reduce__(self) -> object:
        raise TypeError("a principal (and any keys it holds) must not be pickled")

    @property
    def id(self) -> uuid.UUID:
        return self.account.id

    @property
    def role(self) -> str:
        return self.account.role

    @property
    def mfa_verified(self) -> bool:
        return self.token.mfa_verified

    @property
    def mfa_needed(self) -> bool:
        return requires_mfa(self.account.role) or self.account.has_totp

    def get_id(self) -> str:
        return str(self.account.id)
