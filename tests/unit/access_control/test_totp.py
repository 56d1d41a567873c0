"""TOTP matching (RFC 6238) and recovery codes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pyotp
import pytest
import segno

from medchat.identity import totp
from medchat.models import Account
from tests.support.accounts import make_member

NOW = datetime(2026, 11, 25, 9, 0, 10, tzinfo=UTC)


@pytest.fixture
def secret() -> str:
    return totp.generate_secret()


def test_current_code_matches_its_step(secret):
    step = totp.matching_step(secret, pyotp.TOTP(secret).at(NOW), NOW)
    assert step == int(NOW.timestamp()) // 30


@pytest.mark.parametrize("offset", [-30, 30])
def test_one_step_of_drift_is_tolerated(secret, offset):
    code = pyotp.TOTP(secret).at(NOW + timedelta(seconds=offset))
    assert totp.matching_step(secret, code, NOW) is not None


@pytest.mark.parametrize("offset", [-90, -60, 60, 90])
def test_codes_further_away_are_refused(secret, offset):
    # +-60 s is the first step outside the window on either side: its edges, not just beyond.
    code = pyotp.TOTP(secret).at(NOW + timedelta(seconds=offset))
    assert totp.matching_step(secret, code, NOW) is None


@pytest.mark.parametrize(
    "code",
    # Six non-ASCII digits (Arabic-Indic, fullwidth): isdigit() is true of them, and
    # compare_digest would raise on them rather than refuse.
    [
        *("", "12345", "1234567", "abcdef", "12 34 5x"),
        *("\u0661\u0662\u0663\u0664\u0665\u0666", "\uff11\uff12\uff13\uff14\uff15\uff16"),
    ],
)
def test_malformed_codes_never_match(secret, code):
    assert totp.matching_step(secret, code, NOW) is None


def test_a_code_typed_with_spaces_matches(secret):
    code = pyotp.TOTP(secret).at(NOW)
    assert totp.matching_step(secret, f" {code[:3]} {code[3:]} ", NOW) is not None


def test_provisioning_uri_and_qr_code(secret):
    uri = totp.provisioning_uri(secret, "dr@example.org")
    # The label names the account, so an authenticator holding several tells them apart.
    assert unquote(uri).startswith("otpauth://totp/medchat:dr@example.org?")
    assert f"secret={secret}" in uri
    svg = totp.qr_svg(uri)
    assert svg.startswith("<svg") and "</svg>" in svg
    assert "<script" not in svg


def test_qr_code_is_level_m_four_pixels_a_module_with_a_two_module_margin(secret):
    # Level M survives a smudged or glare-struck screen; 4 px a module and the 2-module quiet
    # zone make the size the enrolment page lays out. A lower level would make a smaller symbol.
    uri = totp.provisioning_uri(secret, "dr@example.org")
    modules = segno.make(uri, error="m", boost_error=False).symbol_size(border=0)[0]
    size = 4 * (modules + 2 * 2)
    assert f'<svg width="{size}" height="{size}"' in totp.qr_svg(uri)


# Recovery codes, on the database: single use, bound to their account, replaced whole.


def _codes(runtime, person) -> list[str]:
    with runtime.database.transaction() as session:
        return totp.new_recovery_codes(session, person.id)


def _spend(runtime, person, code) -> bool:
    with runtime.database.transaction() as session:
        return totp.consume_recovery_code(session, person.id, code, NOW)


def test_recovery_codes_are_four_groups_of_four(runtime):
    codes = _codes(runtime, make_member(runtime))
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-z2-9]{4}(-[a-z2-9]{4}){3}", code) for code in codes)


def test_a_recovery_code_is_spent_once(runtime):
    member = make_member(runtime)
    codes = _codes(runtime, member)
    assert _spend(runtime, member, codes[0])
    assert not _spend(runtime, member, codes[0])
    # Typed with spaces instead of dashes, in capitals: the same code.
    assert _spend(runtime, member, codes[1].replace("-", " ").upper())


def test_one_accounts_recovery_code_is_refused_for_another(runtime):
    owner, other = make_member(runtime), make_member(runtime)
    codes = _codes(runtime, owner)
    _codes(runtime, other)
    assert not _spend(runtime, other, codes[0])
    assert _spend(runtime, owner, codes[0])


def test_new_recovery_codes_invalidate_the_old_ones_of_that_account_only(runtime):
    member, neighbour = make_member(runtime), make_member(runtime)
    old = _codes(runtime, member)
    neighbours = _codes(runtime, neighbour)
    new = _codes(runtime, member)
    assert not any(_spend(runtime, member, code) for code in old)
    assert _spend(runtime, member, new[0])
    assert _spend(runtime, neighbour, neighbours[0])


def test_the_second_factor_takes_each_totp_step_and_each_recovery_code_once(runtime):
    member = make_member(runtime, totp=True)  # enrolment spent the step of the clock's now
    codes = _codes(runtime, member)
    later = runtime.clock.now() + timedelta(minutes=5)

    def verify(code: str, now: datetime) -> bool:
        with runtime.database.transaction() as session:
            account = session.get(Account, member.id)
            return totp.verify_second_factor(session, account, member.totp_secret, code, now)

    code = pyotp.TOTP(member.totp_secret).at(later)
    assert verify(code, later)
    assert not verify(code, later)  # replayed
    earlier = later - timedelta(minutes=2)
    assert not verify(pyotp.TOTP(member.totp_secret).at(earlier), earlier)  # before the last
    assert verify(codes[0], later)
    assert not verify(codes[0], later)
    assert not verify("not-a-code-at-all", later)
