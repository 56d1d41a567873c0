"""Console sessions: a cookie-borne token, two steps to sign in, idle and absolute limits.

SECURITY-MODEL "Authentication" and 5: the console cookie carries a random token; the
database keeps its hash and the clinician's opened keys sealed under a key derived from it and
the session-keyring server key (``access_control.keyring``), so the database alone, or with
the cookie, opens nothing. Signing in takes two steps: the password opens a *pending* session
good for the TOTP step only; the code replaces it with a new session (the id is renewed at
login and again at 2FA, so a cookie from before is worth nothing). Sessions end after 15 idle
minutes or 8 hours, whichever comes first (configurable), and on logout, which deletes the
row; ``medchat.services.token_purge`` deletes ended ones. A session whose keyring is of a
format that no longer opens is signed out.

Keys open only after the second factor (SECURITY-MODEL 5, "after 2FA where required"). The
pending row holds no key material at all. The password step does the scrypt work the key
needs (``PersonalKeys.personal_key_runs``: scrypt runs, nothing opened) and seals those runs
under ``HKDF(pending token, salt=session-keyring server key)``, bound to the pending row and
the account; the sealed bytes go to the client's cookie only (``start_pending``). The TOTP
step opens them (``carried_password``) and only then the key. A stolen pending cookie with a
database copy opens nothing (the server key is missing), and even with the key directory it
gives what the password itself gives, no more; the runs are refused once the pending row is
gone (promoted, expired, purged).
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from access_control import crypto
from access_control.keyring import Keyring, derive_token_key, is_current, seal_keyring
from access_control.password_kdf import Password, ScryptParams, Stretched
from medchat.errors import InvalidToken
from medchat.identity.tokens import SignInOrigin, forget_opened_keys, token_row
from medchat.models import Account, AuthToken, TokenKind

PENDING_LIFETIME = timedelta(minutes=5)
_PREFIX = "mcc_"
_CARRY_INFO = b"medchat/console-pending-runs/v1"
_CARRY_AAD = "medchat/console-pending-runs/v1"
_CARRY_VERSION = 1
#: Per run: account flag (1), log2 N, r, p (3), salt (16), scrypt output (32).
_RUN_SIZE = 1 + 3 + 16 + 32


def _serialise_runs(password: Password) -> bytearray:
    out = bytearray([_CARRY_VERSION, len(password.runs())])
    for run in password.runs():
        out += bytes([run is password.account, run.params.log2_n, run.params.r, run.params.p])
        out += run.salt + run.secret_output()
    return out


def _parse_runs(data: bytes) -> Password:
    if len(data) < 2 or data[0] != _CARRY_VERSION or len(data) != 2 + data[1] * _RUN_SIZE:
        raise crypto.DecryptionFailed
    runs, account = [], None
    for start in range(2, len(data), _RUN_SIZE):
        flag, log2_n, r, p = data[start : start + 4]
        try:
            params = ScryptParams(log2_n=log2_n, r=r, p=p)
        except ValueError as exc:
            raise crypto.DecryptionFailed from exc
        run = Stretched(data[start + 4 : start + 20], params, data[start + 20 : start + _RUN_SIZE])
        runs.append(run)
        if flag:
            account = run
    carried = Password(None, runs)
    carried.account = account
    return carried


class ConsoleSessions:
    def __init__(
        self,
        session: Session,
        now: datetime,
        *,
        idle: timedelta,
        absolute: timedelta,
        keyring_secret: bytes,
        origin: SignInOrigin | None = None,
    ) -> None:
        self.session = session
        #: Where this request comes from: recorded on the full session for the sign-in list.
        self.origin = origin or SignInOrigin()
        #: The full session ``promote`` started (its token family), for the device notice.
        self.promoted: uuid.UUID | None = None
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
        origin: SignInOrigin | None = None,
    ) -> tuple[str, uuid.UUID]:
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
                device=origin.device if origin else None,
                network=origin.network if origin else None,
                sealed_keys=(
                    seal_keyring(keyring, token, row_id, self.keyring_secret) if keyring else None
                ),
            )
        )
        self.session.flush()
        return token, row_id

    def start_pending(self, account_id: uuid.UUID, runs: Password) -> tuple[str, str]:
        """After the password: a short-lived session that only the TOTP step accepts.

        Returns its token and ``runs`` (the scrypt work done on the password, no text)
        sealed to that token, the server key, the row and the account: both for the client's
        cookie only. The row holds no key material (module docstring).
        """
        end = self.now + PENDING_LIFETIME
        token, row_id = self._insert(
            account_id,
            TokenKind.CONSOLE_PENDING,
            expires_at=end,
            family_expires_at=end,
            mfa_verified=False,
            keyring=None,
        )
        plain = _serialise_runs(runs)
        try:
            sealed = crypto.seal(
                derive_token_key(token, self.keyring_secret, _CARRY_INFO),
                plain,
                crypto.associated_data(_CARRY_AAD, row_id, account_id),
            )
        finally:
            plain[:] = bytes(len(plain))  # the runs stay in memory no longer than needed
        return token, base64.urlsafe_b64encode(sealed).decode("ascii")

    def carried_password(self, record: AuthToken, pending_token: str, carried: str) -> Password:
        """What the password step carried, for opening the keys after the second factor.

        ``record`` is the live pending row (``pending``). Raises ``InvalidToken`` when the
        carried bytes do not open with this token, row, account and server key.
        """
        try:
            sealed = base64.urlsafe_b64decode(carried.encode("ascii"))
            plain = crypto.open_sealed(
                derive_token_key(pending_token, self.keyring_secret, _CARRY_INFO),
                sealed,
                crypto.associated_data(_CARRY_AAD, record.id, record.account_id),
            )
            return _parse_runs(plain)
        except (ValueError, crypto.DecryptionFailed) as exc:
            raise InvalidToken from exc

    def _lookup(self, token: str, kind: TokenKind) -> tuple[AuthToken, Account]:
        record, account = token_row(self.session, token, kind)
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

    def promote(self, pending_token: str, keyring: Keyring | None) -> str:
        """The second factor passed: replace the pending session with a full one holding
        ``keyring`` (opened just now from what the pending step carried).

        Raises ``InvalidToken`` (back to the sign-in page) when the pending session is gone.
        """
        record, account = self._lookup(pending_token, TokenKind.CONSOLE_PENDING)
        self.session.delete(record)
        token, self.promoted = self._insert(
            account.id,
            TokenKind.CONSOLE,
            expires_at=self.now + self.idle,
            family_expires_at=self.now + self.absolute,
            mfa_verified=True,
            keyring=keyring if keyring is not None and not keyring.is_empty else None,
            origin=self.origin,
        )
        return token

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
