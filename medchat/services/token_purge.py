"""Expired tokens and sessions are deleted, not merely ignored (SECURITY-MODEL key hierarchy 10,
"Sessions").

A token row that no check accepts any more still costs something if it stays: a console or
bearer row keeps its sealed keyring, so a copy of the database taken later plus the old cookie
or token (and the server key) opens that session's private keys offline. Deleting the row
leaves nothing to open. What goes, as of a time ``as_of`` (a row whose expiry *is* ``as_of``
has expired: the token checks accept only ``expires_at > now``):

- ``auth_tokens`` (access, refresh, console, pending console): every row past its own expiry,
  except a *spent* refresh token (``used_at`` set, no keyring) whose family is still running:
  that row is how the reuse of a leaked refresh token is recognised and revokes the family
  (``medchat.identity.tokens``), so it stays, holding no secret, until the family's absolute end,
  and no longer. (``expires_at`` never passes ``family_expires_at``: every writer takes the
  earlier of the two, so this walk follows the ``expires_at`` index of migration 0010.) A row
  whose keyring is of a format this server no longer opens (``access_control.keyring``, sealed
  before keyrings needed the server key) can never sign anyone in again: it goes too.
- ``password_reset_tokens``, ``enrollment_tokens`` and ``email_change_tokens``: past their
  expiry, or used (an e-mail change row also holds the sealed address it was for).

Two ways in, one set of rules:

- ``TokenPurge(runtime).run(as_of)``, from ``medchat retention run``: the whole database in
  batches, each its own transaction. On PostgreSQL the rows of a batch are taken ``FOR UPDATE
  SKIP LOCKED`` and deleted by id with the rule checked again, so several hosts running it at
  once share the rows, each deleted (and counted) once, and none waits for another: no lock
  serialises the service. On SQLite every unit of work holds the write lock and runs take turns.
  A second run as of the same time deletes nothing. One ``auth.token_purge`` audit entry per
  run that deleted something (ids and counts only); a run that fails writes one with outcome
  ``failed``.
- ``purge_account(session, account_id, now)``, at sign-in, in the request's transaction: that
  account's own rows only, at most ``SIGN_IN_LIMIT`` per table (a few indexed statements;
  the daily run takes the rest), audited the same way when something went.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    LargeBinary,
    and_,
    delete,
    func,
    literal,
    not_,
    select,
)
from sqlalchemy.orm import Session

from access_control.keyring import FORMAT_PREFIX
from medchat import audit
from medchat.clock import iso_z
from medchat.db import rows_changed
from medchat.identity import single_use
from medchat.models import (
    AuthToken,
    EmailChangeToken,
    EnrollmentToken,
    PasswordResetToken,
    TokenKind,
)
from medchat.models.tokens import SingleUseToken
from medchat.storage.batch_jobs import BatchJob

ACTION = "auth.token_purge"
#: Rows per table deleted at one sign-in, at most.
SIGN_IN_LIMIT = 100
log = logging.getLogger("medchat.token_purge")

_Model = type[AuthToken] | type[SingleUseToken]


@dataclass
class PurgeCounts:
    """Rows deleted (or, for ``count_due``, due) per kind."""

    auth_tokens: int = 0
    #: Session rows whose keyring is of a format that no longer opens (before the upgrade).
    old_keyring_tokens: int = 0
    password_reset_tokens: int = 0
    enrollment_tokens: int = 0
    email_change_tokens: int = 0

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())

    def as_dict(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in fields(self)}

    def add(self, other: PurgeCounts) -> None:
        for name, value in other.as_dict().items():
            setattr(self, name, getattr(self, name) + value)


def expired_auth_tokens(as_of: datetime) -> ColumnElement[bool]:
    """Token rows to delete as of ``as_of`` (module docstring): expired, unless kept as the
    evidence of a spent refresh token while its family runs."""
    reuse_evidence = and_(
        AuthToken.kind == TokenKind.REFRESH,
        AuthToken.used_at.is_not(None),
        AuthToken.sealed_keys.is_(None),
        AuthToken.family_expires_at > as_of,
    )
    return and_(AuthToken.expires_at <= as_of, not_(reuse_evidence))


def old_keyring_tokens() -> ColumnElement[bool]:
    """Token rows whose keyring this server can no longer open (an older format)."""
    first_byte = func.substr(AuthToken.sealed_keys, 1, 1)
    return and_(
        AuthToken.sealed_keys.is_not(None),
        first_byte != literal(FORMAT_PREFIX, LargeBinary),
    )


def _rules(as_of: datetime) -> list[tuple[str, _Model, ColumnElement[bool]]]:
    return [
        ("auth_tokens", AuthToken, expired_auth_tokens(as_of)),
        ("old_keyring_tokens", AuthToken, old_keyring_tokens()),
        ("password_reset_tokens", PasswordResetToken, single_use.dead(PasswordResetToken, as_of)),
        ("enrollment_tokens", EnrollmentToken, single_use.dead(EnrollmentToken, as_of)),
        ("email_change_tokens", EmailChangeToken, single_use.dead(EmailChangeToken, as_of)),
    ]


def _delete_batch(
    session: Session, model: _Model, rule: ColumnElement[bool], limit: int
) -> tuple[int, int]:
    """Delete up to ``limit`` rows matching ``rule`` that no other transaction holds.

    Returns (rows taken, rows deleted). Every row taken is deleted or already gone, so a walk
    that repeats this until nothing is taken ends.
    """
    pick = select(model.id).where(rule).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = list(session.scalars(pick))
    if not ids:
        return 0, 0
    # The rule again: what is deleted is what is due as of the lock, counted once.
    result = session.execute(
        delete(model).where(model.id.in_(ids), rule).execution_options(synchronize_session=False)
    )
    return len(ids), rows_changed(result)


def purge_account(
    session: Session, account_id: uuid.UUID, now: datetime, *, limit: int = SIGN_IN_LIMIT
) -> PurgeCounts:
    """Delete the account's own expired rows (at most ``limit`` per table) in the caller's
    transaction; the cheap request-path half of the purge, run at sign-in."""
    counts = PurgeCounts()
    for name, model, rule in _rules(now):
        mine = and_(model.account_id == account_id, rule)
        setattr(counts, name, _delete_batch(session, model, mine, limit)[1])
    if counts.total:
        audit.record(
            session,
            ACTION,
            target_type="account",
            target_id=account_id,
            details={**counts.as_dict(), "at": "sign_in"},
        )
    return counts


class TokenPurge(BatchJob):
    """Deletes every expired token row of the database, one transaction per batch (module
    docstring). ``runtime.database`` opens each batch's session, so runs on several threads,
    processes or hosts never share one."""

    def count_due(self, as_of: datetime | None = None) -> PurgeCounts:
        """What a run as of ``as_of`` (default: now) would delete; changes nothing."""
        moment = self.runtime.clock.now() if as_of is None else as_of
        counts = PurgeCounts()
        with self.runtime.database.transaction() as session:
            for name, model, rule in _rules(moment):
                due = session.scalar(select(func.count()).select_from(model).where(rule)) or 0
                setattr(counts, name, int(due))
        return counts

    def run(self, as_of: datetime | None = None) -> PurgeCounts:
        """Delete everything due as of ``as_of`` (default: the clock's now).

        Raises ``ValueError`` for an ``as_of`` later than now (that would end live sessions).
        A failing batch raises after its transaction is rolled back; the batches before it
        stay done.
        """
        now = self.runtime.clock.now()
        moment = now if as_of is None else as_of
        if moment > now:
            raise ValueError("a purge as of a later time than now would end live sessions")
        run_id = uuid.uuid4()
        counts = PurgeCounts()
        batches = 0
        try:
            for name, model, rule in _rules(moment):
                while True:
                    with self.runtime.database.transaction() as session:
                        taken, deleted = _delete_batch(session, model, rule, self.batch_size)
                    if not taken:
                        break
                    batches += 1
                    setattr(counts, name, getattr(counts, name) + deleted)
        except BaseException:
            try:
                self._summary(run_id, moment, counts, batches, outcome="failed")
            except Exception:  # the original failure is the one to report
                log.exception("could not audit the failed token purge %s", run_id)
            raise
        if counts.total:
            self._summary(run_id, moment, counts, batches)
        return counts

    def _summary(
        self,
        run_id: uuid.UUID,
        as_of: datetime,
        counts: PurgeCounts,
        batches: int,
        *,
        outcome: str = "success",
    ) -> None:
        details: dict[str, Any] = {
            **counts.as_dict(),
            "batches": batches,
            "batch_size": self.batch_size,
            "as_of": iso_z(as_of),
        }
        with self.runtime.database.transaction() as session:
            audit.set_context(session, self.audit_context)
            audit.record(
                session,
                ACTION,
                target_type="token_purge",
                target_id=run_id,
                outcome=outcome,
                details=details,
            )
