"""Password policy and hashing (SECURITY-MODEL "Authentication")."""

from __future__ import annotations

from datetime import date

import bcrypt
import pytest

from access_control.passwords import PasswordHasher, PersonalData, check_strength, user_inputs
from medchat.errors import WeakPassword

STRONG = "quokka-harbor-lantern-42"
JEANNE = PersonalData("jeanne.moreau@example.org", "Jeanne", "Moreau", date(1988, 6, 12))


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(4)


def test_strong_password_passes():
    check_strength(STRONG, JEANNE)


def test_eight_characters_are_too_few_even_if_random():
    with pytest.raises(WeakPassword):
        check_strength("Zq8#pL2w")
    check_strength("Zq8#pL2w!")  # nine random characters are enough


def test_the_persons_own_email_and_names_are_user_inputs():
    # Strong to zxcvbn on its own, trivial once the person's e-mail is known.
    check_strength("jeanne.moreau@example.org")
    with pytest.raises(WeakPassword) as caught:
        check_strength("jeanne.moreau@example.org", JEANNE)
    assert caught.value.details["password"]


@pytest.mark.parametrize(
    "password", ["MoreauJeanne1", "JeanneMoreau1988", "jmoreau12061988", "jeanne.moreau88"]
)
def test_names_joined_and_the_birth_date_are_user_inputs(password):
    check_strength(password)  # strong for a stranger ...
    with pytest.raises(WeakPassword):
        check_strength(password, JEANNE)  # ... a first guess for anyone who knows her


def test_the_user_inputs_hold_names_email_parts_and_birth_date_forms():
    inputs = user_inputs(JEANNE)
    for expected in ("jeanne", "moreau", "moreaujeanne", "jeanne.moreau", "example", "1988"):
        assert expected in inputs
    for expected in ("12061988", "120688", "19880612", "1988-06-12", "12/06/1988", "88"):
        assert expected in inputs
    assert len(inputs) == len(set(inputs))
    staff = PersonalData("a.b@staff.example.org", "Anne-Marie", "O'Neil")
    assert "annemarieoneil" in user_inputs(staff)
    assert not any(part.isdigit() for part in user_inputs(staff))


def test_absurdly_long_passwords_are_refused():
    with pytest.raises(WeakPassword):
        check_strength("x" * 1025)


def test_hash_verifies_only_the_same_password(hasher):
    hashed = hasher.hash(STRONG)
    assert hasher.verify(STRONG, hashed)
    assert not hasher.verify(STRONG + "!", hashed)


def test_hashes_are_salted_per_password(hasher):
    assert hasher.hash(STRONG) != hasher.hash(STRONG)


def test_bytes_past_72_still_count(hasher):
    base = "correct horse battery staple " * 3
    assert len(base.encode()) > 72
    hashed = hasher.hash(base + "A")
    assert hasher.verify(base + "A", hashed)
    assert not hasher.verify(base + "B", hashed)


def test_multibyte_passwords_past_72_bytes_are_prehashed(hasher):
    password = "é" * 40  # 80 bytes, 40 characters
    hashed = hasher.hash(password)
    assert hasher.verify(password, hashed)
    assert not hasher.verify("é" * 36, hashed)  # the first 72 bytes alone do not match


def test_unknown_account_check_fails_after_equal_work(hasher):
    assert hasher.verify(STRONG, None) is False
    assert hasher._dummy.startswith(b"$2b$04$")


def test_the_dummy_hash_is_a_well_formed_bcrypt_hash_of_its_own(hasher):

    # bcrypt accepts it (a malformed one raises "Invalid salt" instead of doing the work) ...
    assert len(hasher._dummy) == 60
    assert bcrypt.checkpw(STRONG.encode(), hasher._dummy) is False
    # ... and each process makes its own: no fixed value anyone could look up.
    assert PasswordHasher(4)._dummy != PasswordHasher(4)._dummy
