"""TOTP matching (RFC 6238) and recovery codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from medchat.identity import totp

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


@pytest.mark.parametrize("offset", [-90, 90])
def test_codes_further_away_are_refused(secret, offset):
    code = pyotp.TOTP(secret).at(NOW + timedelta(seconds=offset))
    assert totp.matching_step(secret, code, NOW) is None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 34 5x"])
def test_malformed_codes_never_match(secret, code):
    assert totp.matching_step(secret, code, NOW) is None


def test_provisioning_uri_and_qr_code(secret):
    uri = totp.provisioning_uri(secret, "dr@example.org")
    assert uri.startswith("otpauth://totp/medchat:")
    assert f"secret={secret}" in uri
    svg = totp.qr_svg(uri)
    assert svg.startswith("<svg") and "</svg>" in svg
    assert "<script" not in svg
