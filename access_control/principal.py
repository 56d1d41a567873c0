"""The authenticated caller of one request: an account, its token, what it proved, and the
private keys its token can unseal (opened only when a request needs them)."""

from __future__ import annotations

import uuid

from flask_login import UserMixin

from access_control.crypto import DecryptionFailed
from access_control.keyring import Keyring, open_keyring
from access_control.roles import requires_mfa
from medchat.errors import InvalidToken
from medchat.models import Account, AuthToken


class Principal(UserMixin):
    """What Flask-Login's ``current_user`` is for a signed-in request."""

    def __init__(self, account: Account, token: AuthToken, presented: str) -> None:
        self.account = account
        self.token = token
        self._presented = presented
        self._keyring: Keyring | None = None

    def __repr__(self) -> str:
        return f"Principal(account={self.account.id}, role={self.account.role})"

    def __reduce__(self) -> object:
        raise TypeError("a principal (and any keys it holds) must not be pickled")

    @classmethod
    def in_process(cls, account: Account, keyring: Keyring) -> Principal:
        """A caller acting inside this process with keys it opened itself (CLI commands that
        authenticated the person, the local demo): no token, no HTTP session."""
        principal = cls.__new__(cls)
        principal.account = account
        principal.token = None  # type: ignore[assignment]
        principal._presented = ""
        principal._keyring = keyring
        return principal

    @property
    def id(self) -> uuid.UUID:
        return self.account.id

    @property
    def role(self) -> str:
        return self.account.role

    @property
    def mfa_verified(self) -> bool:
        return self.token.mfa_verified if self.token is not None else True

    @property
    def mfa_needed(self) -> bool:
        return requires_mfa(self.account.role) or self.account.has_totp

    @property
    def keyring(self) -> Keyring:
        """The caller's opened private keys, unsealed on first use with the presented token."""
        if self._keyring is None:
            if self.token.sealed_keys is None:
                self._keyring = Keyring(self.account.id)
            else:
                try:
                    self._keyring = open_keyring(
                        self.token.sealed_keys, self._presented, self.token.id, self.account.id
                    )
                except DecryptionFailed as exc:
                    raise InvalidToken from exc
        return self._keyring

    def get_id(self) -> str:
        return str(self.account.id)
