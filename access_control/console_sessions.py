"""Console sessions: a cookie-borne token, two steps to sign in, idle and absolute limits.

SECURITY-MODEL "Authentication" and 5: the console cookie carries a random token; the
database keeps its hash and the clinician's opened keys sealed under a key derived from it and
the session-keyring server key (``access_control.keyring``), so the database alone, or with
the cookie, opens nothing. Signing in takes two steps: the
password opens a *pending* session good for the TOTP step only; the code replaces it with a
new session (the id is renewed at login and again at 2FA, so a cookie from before is worth
nothing). Sessions end after 15 idle minutes or 8 hours, whichever comes first (configurable),
and on logout, which deletes the row; ``medchat.services.token_purge`` deletes ended ones. A
session whose keyring is of a format that no longer opens is signed out.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from access_control import crypto
from access_control.keyring import Keyring, is_current, open_keyring, seal_keyring
from access_control.tokens import forget_opened_keys
from medchat.errors import InvalidToken
from medchat.models import Account, AuthToken, TokenKind

PENDING_LIFETIME = timedelta(minutes=5)
_PREFIX = "mcc_"


class ConsoleSessions:
    def __init__(
        self,
        session: Session,
        now: datetime,
        *,
        idle: timedelta,
        absolute: timedelta,
        keyring_secret: bytes,
    ) -> None:
        self.session = session
        self.now = now
        self.idle = idle
        self.absolute = absolute
        self.keyring_secret = keyring_secret

    def _insert(
        self,
        account_id: uuid.UUID,
        kind: TokenKind,
        *,
        expires_at: datetime,
        family_expires_at: datetime,
        mfa_verified: bool,
        keyring: Keyring | None,
    ) -> str:
        token = _PREFIX + crypto.random_token()
        row_id = uuid.uuid4()
        self.session.add(
            AuthToken(
                id=row_id,
                account_id=account_id,
                family_id=row_id,
                kind=kind,
                token_hash=crypto.token_hash(token),
                mfa_verified=mfa_verified,
                created_at=self.now,
                expires_at=expires_at,
                family_expires_at=family_expires_at,
                last_used_at=self.now,
                sealed_keys=(
                    seal_keyring(keyring, token, row_id, self.keyring_secret) if keyring else None
                ),
            )
        )
        self.session.flush()
        return token

    def start_pending(self, account_id: uuid.UUID, keyring: Keyring) -> str:
        """After the password: a short-lived session that only the TOTP step accepts."""
        end = self.now + PENDING_LIFETIME
        return self._insert(
            account_id,
            TokenKind.CONSOLE_PENDING,
            expires_at=end,
            family_expires_at=end,
            mfa_verified=False,
            keyring=keyring,
        )

    def _lookup(self, token: str, kind: TokenKind) -> tuple[AuthToken, Account]:
        row = self.session.execute(
            select(AuthToken, Account)
            .join(Account, Account.id == AuthToken.account_id)
            .where(AuthToken.token_hash == crypto.token_hash(token), AuthToken.kind == kind)
        ).one_or_none()
        if row is None:
            raise InvalidToken
        record, account = row
        if (
            record.expires_at <= self.now
            or record.family_expires_at <= self.now
            or not account.is_active
            or not is_current(record.sealed_keys)
        ):
            raise InvalidToken
        return record, account

    def pending(self, token: str) -> tuple[AuthToken, Account]:
        return self._lookup(token, TokenKind.CONSOLE_PENDING)

    def promote(self, pending_token: str) -> str:
        """The second factor passed: replace the pending session with a full one.

        Raises ``InvalidToken`` (back to the sign-in page) when the pending session is gone
        or its keyring does not open.
        """
        record, account = self._lookup(pending_token, TokenKind.CONSOLE_PENDING)
        keyring = None
        if record.sealed_keys is not None:
            try:
                keyring = open_keyring(
                    record.sealed_keys, pending_token, record.id, account.id, self.keyring_secret
                )
            except crypto.DecryptionFailed as exc:
                raise InvalidToken from exc
        self.session.delete(record)
        return self._insert(
            account.id,
            TokenKind.CONSOLE,
            expires_at=self.now + self.idle,
            family_expires_at=self.now + self.absolute,
            mfa_verified=True,
            keyring=keyring,
        )

    def authenticate(self, token: str) -> tuple[AuthToken, Account]:
        """A live session; each use pushes the idle limit, never past the absolute one."""
        record, account = self._lookup(token, TokenKind.CONSOLE)
        record.last_used_at = self.now
        record.expires_at = min(self.now + self.idle, record.family_expires_at)
        return record, account

    def end(self, token: str) -> None:
        accounts = self.session.scalars(
            delete(AuthToken)
            .where(AuthToken.token_hash == crypto.token_hash(token))
            .returning(AuthToken.account_id)
        ).all()
        forget_opened_keys(self.session, accounts)
