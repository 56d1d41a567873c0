"""Bearer access tokens and rotating refresh tokens, revocable at once.

The database keeps only SHA-256 hashes of tokens. A login opens a *family*; each refresh spends
its refresh token and issues a new pair in the same family, never past the family's absolute
end. Presenting a spent refresh token means it leaked: the whole family is revoked (written
even though the request itself fails). Revocation deletes rows, so a revoked token and the
session secret sealed beside it (SECURITY-MODEL "Sessions carry the secret") are gone; expired
rows are deleted by ``medchat.services.token_purge``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from access_control import crypto
from access_control.keyring import Keyring, is_current, open_keyring, seal_keyring
from medchat import audit
from medchat.db import on_rollback, table_of
from medchat.db_driver import DriverStatement
from medchat.errors import InvalidToken
from medchat.models import Account, AccountStatus, AuthToken, TokenKind
from medchat.storage.row_integrity import verify_columns

ACCESS_PREFIX = "mca_"
REFRESH_PREFIX = "mcr_"


@dataclass(frozen=True, repr=False)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    family_id: uuid.UUID

    def __repr__(self) -> str:
        return f"TokenPair(family_id={self.family_id})"


@dataclass(frozen=True, repr=False)
class SignInOrigin:
    """Where a sign-in came from, as the sign-in list shows it: a device label from a fixed
    vocabulary and a keyed MAC of the address's network (``identity.sign_ins``). Neither
    decides anything, so neither is in the row tag."""

    device: str | None = None
    network: bytes | None = None

    def __repr__(self) -> str:
        return f"SignInOrigin(device={self.device!r})"


@dataclass(frozen=True)
class TokenLifetimes:
    access: timedelta
    refresh: timedelta


@dataclass(frozen=True, repr=False)
class LiveToken:
    """What a request needs of its live token and account, read as one row of columns."""

    token_id: uuid.UUID
    account_id: uuid.UUID
    family_id: uuid.UUID
    role: str
    has_totp: bool
    mfa_verified: bool
    sealed_keys: bytes | None

    def __repr__(self) -> str:
        return f"LiveToken(account={self.account_id}, role={self.role})"


#: Every authenticated request runs this: built once (building costs more than running it),
#: columns only (no ORM objects, and not the member profile an Account row joins in), run
#: through the driver on PostgreSQL (``medchat.db_driver``). It reads every tagged column of
#: both rows, so both tags are checked (``_verified``): the token's columns and tag, its
#: sealed keyring, then the account's columns and tag, read by position.
_TOKEN_COLUMNS = AuthToken.__row_integrity__.columns
_ACCOUNT_COLUMNS = Account.__row_integrity__.columns
#: Short aliases keep the longer statement it is part of short (``medchat.db_driver``'s limit).
_tokens, TOKEN_CHECK_ACCOUNTS = table_of(AuthToken).alias("t"), table_of(Account).alias("a")
_accounts = TOKEN_CHECK_ACCOUNTS
#: ``TOKEN_CHECK`` is also the first part of a statement that reads a conversation's row check
#: with it (``medchat.services.request_checks``): its rows start with these columns.
TOKEN_CHECK = (
    select(
        *(_tokens.c[name] for name in _TOKEN_COLUMNS),
        _tokens.c.row_tag,
        _tokens.c.sealed_keys,
        *(_accounts.c[name] for name in _ACCOUNT_COLUMNS),
        _accounts.c.row_tag,
    )
    .join_from(_tokens, _accounts, _accounts.c.id == _tokens.c.account_id)
    .where(_tokens.c.token_hash == bindparam("token_hash"), _tokens.c.kind == bindparam("kind"))
)
_CHECK = DriverStatement(TOKEN_CHECK, outside_transaction=True)
_SEALED_KEYS = len(_TOKEN_COLUMNS) + 1
_ACCOUNT_START = _SEALED_KEYS + 1
_ACCOUNT_TAG = _ACCOUNT_START + len(_ACCOUNT_COLUMNS)
#: How many columns of a row ``TOKEN_CHECK`` reads.
TOKEN_CHECK_WIDTH = _ACCOUNT_TAG + 1


def check_params(token: str, kind: TokenKind) -> dict[str, Any]:
    """``TOKEN_CHECK``'s parameters for a presented token."""
    return {"token_hash": crypto.token_hash(token), "kind": kind}


def _verified(
    session: Session, row: Sequence[Any]
) -> tuple[dict[str, Any], dict[str, Any], bytes | None]:
    """The token's and the account's tagged columns, both tags checked (else refused), and
    the token's sealed keyring."""
    token = dict(zip(_TOKEN_COLUMNS, row[: _SEALED_KEYS - 1], strict=True))
    account = dict(zip(_ACCOUNT_COLUMNS, row[_ACCOUNT_START:_ACCOUNT_TAG], strict=True))
    verify_columns(session, AuthToken, token, row[_SEALED_KEYS - 1])
    verify_columns(session, Account, account, row[_ACCOUNT_TAG])
    return token, account, row[_SEALED_KEYS]


def _live(
    used_at: datetime | None,
    expires_at: datetime,
    status: str,
    sealed_keys: bytes | None,
    now: datetime,
) -> bool:
    """The one rule for a bearer token: never used up (a rotated refresh token is), not
    expired, its account active, and its keyring (if any) in a format that still opens (one
    sealed before the upgrade to token-and-server-key keyrings is a signed-out session)."""
    return (
        used_at is None
        and expires_at > now
        and status == AccountStatus.ACTIVE
        and is_current(sealed_keys)
    )


def token_row(session: Session, token: str, kind: TokenKind) -> tuple[AuthToken, Account]:
    """The row of this kind that holds ``token``'s hash, and its account; ``InvalidToken``
    when there is none. The one lookup of a presented token, for bearer tokens and console
    sessions alike; whether the row is still live is the caller's rule (``_live`` here,
    idle and absolute limits for the console)."""
    row = session.execute(
        select(AuthToken, Account)
        .join(Account, Account.id == AuthToken.account_id)
        .where(AuthToken.token_hash == crypto.token_hash(token), AuthToken.kind == kind)
    ).one_or_none()
    if row is None:
        raise InvalidToken
    record, account = row
    return record, account


class TokenStore:
    """Issues, checks, rotates and revokes tokens within the caller's transaction.

    ``keyring_secret`` (the session-keyring server key) seals and opens the keyrings beside
    the tokens; a store that only checks or revokes tokens does without it.
    """

    def __init__(
        self, session: Session, now: datetime, *, keyring_secret: bytes | None = None
    ) -> None:
        self.session = session
        self.now = now
        self._keyring_secret = keyring_secret

    @property
    def keyring_secret(self) -> bytes:
        if self._keyring_secret is None:
            raise ValueError("sealing or opening a session keyring needs the server secret")
        return self._keyring_secret

    def _add(
        self,
        account_id: uuid.UUID,
        family_id: uuid.UUID,
        kind: TokenKind,
        lifetime: timedelta,
        family_expires_at: datetime,
        mfa_verified: bool,
        keyring: Keyring | None,
        origin: SignInOrigin,
    ) -> str:
        prefix = ACCESS_PREFIX if kind is TokenKind.ACCESS else REFRESH_PREFIX
        token = prefix + crypto.random_token()
        row_id = uuid.uuid4()
        self.session.add(
            AuthToken(
                id=row_id,
                account_id=account_id,
                family_id=family_id,
                kind=kind,
                token_hash=crypto.token_hash(token),
                mfa_verified=mfa_verified,
                created_at=self.now,
                expires_at=min(self.now + lifetime, family_expires_at),
                family_expires_at=family_expires_at,
                sealed_keys=(
                    seal_keyring(keyring, token, row_id, self.keyring_secret) if keyring else None
                ),
                device=origin.device,
                network=origin.network,
            )
        )
        return token

    def issue_pair(
        self,
        account_id: uuid.UUID,
        lifetimes: TokenLifetimes,
        *,
        mfa_verified: bool,
        family_id: uuid.UUID | None = None,
        family_expires_at: datetime | None = None,
        keyring: Keyring | None = None,
        origin: SignInOrigin | None = None,
    ) -> TokenPair:
        """Start a family (login) or continue one (refresh).

        ``keyring`` (the opened private keys) is sealed beside each token under a key derived
        from that token, which only the client holds, and the session-keyring server key.
        ``origin`` (device label, network MAC) only informs the sign-in list; a refresh
        carries it over from the spent token.
        """
        origin = origin or SignInOrigin()
        family_id = family_id or uuid.uuid4()
        family_expires_at = family_expires_at or self.now + lifetimes.refresh
        access = self._add(
            account_id,
            family_id,
            TokenKind.ACCESS,
            lifetimes.access,
            family_expires_at,
            mfa_verified,
            keyring,
            origin,
        )
        refresh = self._add(
            account_id,
            family_id,
            TokenKind.REFRESH,
            lifetimes.refresh,
            family_expires_at,
            mfa_verified,
            keyring,
            origin,
        )
        self.session.flush()
        return TokenPair(access, refresh, int(lifetimes.access.total_seconds()), family_id)

    def authenticate(self, token: str, kind: TokenKind) -> tuple[AuthToken, Account]:
        """The live token row and its active account; ``InvalidToken`` otherwise."""
        record, account = token_row(self.session, token, kind)
        if not _live(
            record.used_at, record.expires_at, account.status, record.sealed_keys, self.now
        ):
            raise InvalidToken
        return record, account

    def check(self, token: str, kind: TokenKind) -> LiveToken:
        """``authenticate`` in one statement of columns: the same rules, no ORM objects.

        Raises ``InvalidToken`` for an unknown, spent or expired token, or an account that is
        not active.
        """
        return self.live(_CHECK.one_or_none(self.session.connection(), check_params(token, kind)))

    def live(self, row: Sequence[Any] | None) -> LiveToken:
        """The token a row of ``TOKEN_CHECK`` (read with ``check_params``) holds, checked:
        ``InvalidToken`` for no row, a spent or expired token, or an account that is not
        active; both rows' tags are verified first."""
        if row is None:
            raise InvalidToken
        record, account, sealed_keys = _verified(self.session, row)
        if not _live(
            record["used_at"], record["expires_at"], account["status"], sealed_keys, self.now
        ):
            raise InvalidToken
        return LiveToken(
            token_id=record["id"],
            account_id=record["account_id"],
            family_id=record["family_id"],
            role=account["role"],
            has_totp=account["totp_confirmed_at"] is not None,
            mfa_verified=record["mfa_verified"],
            sealed_keys=sealed_keys,
        )

    def rotate(
        self, refresh_token: str, lifetimes: Callable[[Account], TokenLifetimes]
    ) -> tuple[TokenPair, Account]:
        """Spend a refresh token for a new pair; reuse of a spent one revokes its family."""
        record = self.session.scalar(
            select(AuthToken).where(
                AuthToken.token_hash == crypto.token_hash(refresh_token),
                AuthToken.kind == TokenKind.REFRESH,
            )
        )
        if record is None:
            raise InvalidToken
        if record.used_at is not None:
            family_id, account_id = record.family_id, record.account_id

            def _revoke(fresh: Session) -> None:
                TokenStore(fresh, self.now).revoke_family(family_id)
                audit.record(
                    fresh,
                    "auth.refresh_reuse",
                    target_type="account",
                    target_id=account_id,
                    outcome="denied",
                    details={"family_revoked": str(family_id)},
                )

            on_rollback(self.session, _revoke)
            raise InvalidToken
        account = self.session.get(Account, record.account_id)
        if record.expires_at <= self.now or account is None or not account.is_active:
            raise InvalidToken
        keyring = None
        if record.sealed_keys is not None:
            try:
                keyring = open_keyring(
                    record.sealed_keys,
                    refresh_token,
                    record.id,
                    record.account_id,
                    self.keyring_secret,
                )
            except crypto.DecryptionFailed as exc:
                raise InvalidToken from exc
        record.used_at = self.now
        record.sealed_keys = None
        # The family's access tokens die with the spent refresh token.
        self.session.execute(
            delete(AuthToken).where(
                AuthToken.family_id == record.family_id, AuthToken.kind == TokenKind.ACCESS
            )
        )
        forget_opened_keys(self.session, [record.account_id])
        pair = self.issue_pair(
            record.account_id,
            lifetimes(account),
            mfa_verified=record.mfa_verified,
            family_id=record.family_id,
            family_expires_at=record.family_expires_at,
            keyring=keyring,
            origin=SignInOrigin(record.device, record.network),
        )
        return pair, account

    def mark_mfa_verified(self, family_id: uuid.UUID) -> None:
        """Loaded, not updated in bulk: each row is checked and re-tagged (``row_integrity``)."""
        for record in self.session.scalars(
            select(AuthToken).where(AuthToken.family_id == family_id)
        ):
            record.mfa_verified = True
        self.session.flush()

    def revoke_family(self, family_id: uuid.UUID) -> None:
        accounts = self.session.scalars(
            delete(AuthToken)
            .where(AuthToken.family_id == family_id)
            .returning(AuthToken.account_id)
        ).all()
        forget_opened_keys(self.session, accounts)

    def revoke_account(
        self, account_id: uuid.UUID, *, keep_family: uuid.UUID | None = None
    ) -> None:
        """Delete every token of the account (except one family: the caller's own)."""
        statement = delete(AuthToken).where(AuthToken.account_id == account_id)
        if keep_family is not None:
            statement = statement.where(AuthToken.family_id != keep_family)
        self.session.execute(statement)
        forget_opened_keys(self.session, [account_id])


def forget_opened_keys(session: Session, account_ids: Iterable[uuid.UUID]) -> None:
    """Drop what this process remembers of these accounts' sessions (``unwrap_memo``).

    Hygiene, not the guarantee: a deleted token row already stops its next request, in
    every process, before anything remembered is looked at.
    """
    memo = session.info.get("unwrap_memo")
    if memo is not None:
        for account_id in set(account_ids):
            memo.forget_account(account_id)
