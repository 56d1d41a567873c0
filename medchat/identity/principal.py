"""The authenticated caller of one request: an account, its token, what it proved, and the
private keys its token can unseal (opened only when a request needs them)."""

from __future__ import annotations

import uuid
from typing import NoReturn

from sqlalchemy.orm import Session

from access_control.crypto import DecryptionFailed
from access_control.keyring import Keyring, open_keyring
from access_control.roles import requires_mfa
from medchat.errors import InvalidToken
from medchat.identity.tokens import LiveToken
from medchat.models import Account, AuthToken


class Principal:
    """What Flask-Login's ``current_user`` is for a signed-in request.

    It answers Flask-Login's user protocol itself (``is_authenticated``, ``is_active``,
    ``is_anonymous``, ``get_id``) instead of inheriting ``UserMixin``, so this layer imports
    no Flask extension: the web layer's request loader is the only seam.

    A bearer request is authenticated from one row of columns (``TokenStore.check``); the
    account and token as ORM objects are loaded from the request's session only when a view
    needs them (profile, password change, logout), so the hot paths never build them.
    """

    def __init__(
        self, account: Account, token: AuthToken, presented: str, *, keyring_secret: bytes
    ) -> None:
        self._account: Account | None = account
        self._token: AuthToken | None = token
        self._live: LiveToken | None = None
        self._session: Session | None = None
        self._presented = presented
        #: The session-keyring server key: with the presented token it opens the keyring.
        self._keyring_secret = keyring_secret
        self._keyring: Keyring | None = None

    @classmethod
    def from_live_token(
        cls, live: LiveToken, presented: str, session: Session, *, keyring_secret: bytes
    ) -> Principal:
        """The caller of a request whose token ``TokenStore.check`` found live."""
        principal = cls.__new__(cls)
        principal._account = None
        principal._token = None
        principal._live = live
        principal._session = session
        principal._presented = presented
        principal._keyring_secret = keyring_secret
        principal._keyring = None
        return principal

    def __repr__(self) -> str:
        return f"Principal(account={self.id}, role={self.role})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a principal (and any keys it holds) must not be pickled")

    # Flask-Login's user protocol: a principal exists only for a verified, live token.
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.id)

    @classmethod
    def in_process(cls, account: Account, keyring: Keyring) -> Principal:
        """A caller acting inside this process with keys it opened itself (CLI commands that
        authenticated the person, the local demo): no token, no HTTP session."""
        principal = cls.__new__(cls)
        principal._account = account
        principal._token = None
        principal._live = None
        principal._session = None
        principal._presented = ""
        principal._keyring_secret = b""
        principal._keyring = keyring
        return principal

    @property
    def account(self) -> Account:
        """The caller's account row (loaded from the request's session on first use)."""
        if self._account is None:
            # Built either with its rows or from a live token and a session (never neither).
            assert self._live is not None and self._session is not None  # nosec B101  # an invariant, not input
            account = self._session.get(Account, self._live.account_id)
            if account is None:
                raise InvalidToken
            self._account = account
        return self._account

    @property
    def token(self) -> AuthToken:
        """The token row this request presented (loaded from the request's session on first
        use)."""
        if self._token is None:
            # As for ``account``: built with its token row, or able to load it.
            assert self._live is not None and self._session is not None  # nosec B101  # an invariant, not input
            token = self._session.get(AuthToken, self._live.token_id)
            if token is None:
                raise InvalidToken
            self._token = token
        return self._token

    @property
    def id(self) -> uuid.UUID:
        if self._account is None and self._live is not None:
            return self._live.account_id
        return self.account.id

    @property
    def role(self) -> str:
        if self._account is None and self._live is not None:
            return self._live.role
        return self.account.role

    @property
    def mfa_verified(self) -> bool:
        if self._token is None and self._live is not None:
            return self._live.mfa_verified
        return self._token.mfa_verified if self._token is not None else True

    @property
    def mfa_needed(self) -> bool:
        if self._account is None and self._live is not None:
            return requires_mfa(self._live.role) or self._live.has_totp
        return requires_mfa(self.account.role) or self.account.has_totp

    @property
    def keyring(self) -> Keyring:
        """The caller's opened private keys, unsealed on first use with the presented token
        and the server secret; ``InvalidToken`` (401, signed out) when they do not open."""
        if self._keyring is None:
            if self._live is not None:
                token_id, sealed = self._live.token_id, self._live.sealed_keys
            else:
                token_id, sealed = self.token.id, self.token.sealed_keys
            if sealed is None:
                self._keyring = Keyring(self.id)
            else:
                try:
                    self._keyring = open_keyring(
                        sealed, self._presented, token_id, self.id, self._keyring_secret
                    )
                except DecryptionFailed as exc:
                    raise InvalidToken from exc
        return self._keyring
