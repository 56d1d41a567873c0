"""Issuing, finding and spending single-use tokens: enrollment, password reset, e-mail change.

The three kinds share their columns (``medchat.models.tokens.SingleUseToken``) and the rules
written here once: only the hash is stored; issuing a token spends the account's earlier
unspent ones of that kind (only the newest works); a token is live while unspent and not
expired; redeeming is a conditional update, so of two requests racing with one token one wins.
What each kind asks of the account (an active member, a staff account not disabled, the
signed-in member themselves) and what it refuses with stay with its service. Expired and spent
rows (``dead``) are deleted by ``medchat.services.token_purge``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from access_control import crypto
from medchat.models import Account
from medchat.models.tokens import SingleUseToken
from medchat.storage.row_integrity import withdrawing

T = TypeVar("T", bound=SingleUseToken)


def issue(
    session: Session,
    model: type[T],
    account_id: uuid.UUID,
    token_hash: bytes,
    *,
    now: datetime,
    lifetime: timedelta,
    **columns: Any,
) -> T:
    """Store a token's hash (``crypto.token_hash``) for the account, good for ``lifetime``;
    the account's earlier unspent tokens of this kind stop working. The caller hashes: a
    request that must not tell who has an account hashes on both branches. ``columns``: what
    the kind adds (the sealed address of an e-mail change)."""
    spend_open(session, model, account_id, now)
    # The mapped subclasses take their columns as keywords (SQLAlchemy's constructor); the
    # unmapped mixin ``T`` is bound to declares none, so mypy is shown the call as it runs.
    make: Callable[..., T] = model
    row = make(
        account_id=account_id,
        token_hash=token_hash,
        created_at=now,
        expires_at=now + lifetime,
        **columns,
    )
    session.add(row)
    session.flush()
    return row


def find(session: Session, model: type[T], token: str) -> tuple[T, Account] | None:
    """The row of this kind holding ``token``'s hash, and its account; ``None`` if none does.
    Loaded as objects, so both row tags are checked."""
    row = session.execute(
        select(model, Account)
        .join(Account, Account.id == model.account_id)
        .where(model.token_hash == crypto.token_hash(token))
    ).one_or_none()
    if row is None:
        return None
    record, account = row
    return record, account


def is_live(record: SingleUseToken, now: datetime) -> bool:
    """Not spent and not expired: what every kind asks of the token itself."""
    return record.used_at is None and record.expires_at > now


def dead(model: type[SingleUseToken], as_of: datetime) -> ColumnElement[bool]:
    """The rows of ``model`` that ``is_live`` refuses as of ``as_of`` (spent or expired): what
    the purge deletes."""
    return or_(model.expires_at <= as_of, model.used_at.is_not(None))


def redeem(session: Session, model: type[T], record: T, now: datetime) -> bool:
    """Spend ``record``, and any other token of this kind the account still has open;
    ``False`` (nothing spent) when another request spent ``record`` first."""
    spent = session.execute(
        update(model)
        .where(model.id == record.id, model.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        return False
    spend_open(session, model, record.account_id, now)
    return True


def spend_open(session: Session, model: type[T], account_id: uuid.UUID, now: datetime) -> None:
    """Spend every unspent token of this kind of the account. A bulk update: ``used_at`` is
    not a tagged column (``SingleUseToken``), so no row needs re-tagging, and it only spends
    (``withdrawing``): a planted row it matches is spent, never trusted."""
    session.execute(
        withdrawing(
            update(model)
            .where(model.account_id == account_id, model.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
    )
