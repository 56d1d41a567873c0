"""The rules the three single-use token kinds share (``medchat.identity.single_use``): only the
newest token of an account works, a token is live until spent or expired, of two redemptions
racing with one token one wins, and the purge deletes exactly the rows ``is_live`` refuses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from access_control import crypto
from medchat.identity import single_use
from medchat.models import EmailChangeToken, EnrollmentToken, PasswordResetToken
from tests.support.accounts import make_member

KINDS = [PasswordResetToken, EnrollmentToken, EmailChangeToken]
LIFETIME = timedelta(minutes=30)


def _issue(session, model, account_id, token, now):
    extra = {"new_email_ciphertext": b"sealed"} if model is EmailChangeToken else {}
    return single_use.issue(
        session, model, account_id, crypto.token_hash(token), now=now, lifetime=LIFETIME, **extra
    )


@pytest.mark.parametrize("model", KINDS, ids=lambda m: m.__tablename__)
def test_only_the_newest_token_works(runtime, clock, model) -> None:
    member = make_member(runtime)
    now = clock.now()
    with runtime.database.transaction() as session:
        _issue(session, model, member.id, "first", now)
        _issue(session, model, member.id, "second", now)
        first, _ = single_use.find(session, model, "first")
        second, account = single_use.find(session, model, "second")
        assert account.id == member.id
        assert not single_use.is_live(first, now)
        assert single_use.is_live(second, now)
        assert single_use.find(session, model, "never issued") is None


@pytest.mark.parametrize("model", KINDS, ids=lambda m: m.__tablename__)
def test_a_token_expires(runtime, clock, model) -> None:
    member = make_member(runtime)
    now = clock.now()
    with runtime.database.transaction() as session:
        record = _issue(session, model, member.id, "token", now)
        assert single_use.is_live(record, now + LIFETIME - timedelta(seconds=1))
        assert not single_use.is_live(record, now + LIFETIME)


@pytest.mark.parametrize("model", KINDS, ids=lambda m: m.__tablename__)
def test_one_of_two_redemptions_wins(runtime, clock, model) -> None:
    member = make_member(runtime)
    now = clock.now()
    with runtime.database.transaction() as session:
        record = _issue(session, model, member.id, "token", now)
        assert single_use.redeem(session, model, record, now)
        assert not single_use.redeem(session, model, record, now)
        session.expire_all()
        assert not single_use.is_live(single_use.find(session, model, "token")[0], now)


@pytest.mark.parametrize("model", KINDS, ids=lambda m: m.__tablename__)
def test_dead_is_what_is_live_refuses(runtime, clock, model) -> None:
    """Replaced, redeemed and live rows; the purge's rule and ``is_live`` agree on each."""
    member = make_member(runtime)
    now = clock.now()
    with runtime.database.transaction() as session:
        replaced = _issue(session, model, member.id, "replaced", now - timedelta(minutes=1))
        redeemed = _issue(session, model, member.id, "redeemed", now)
        assert single_use.redeem(session, model, redeemed, now)
        live = _issue(session, model, member.id, "live", now)
        session.expire_all()
        for as_of, expected in (
            (now, {replaced.id, redeemed.id}),
            (now + LIFETIME, {replaced.id, redeemed.id, live.id}),
        ):
            dead = set(session.scalars(select(model.id).where(single_use.dead(model, as_of))))
            rows = session.scalars(select(model).where(model.account_id == member.id)).all()
            assert dead == expected
            assert dead == {row.id for row in rows if not single_use.is_live(row, as_of)}
