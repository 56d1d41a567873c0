"""Password policy and hashing (SECURITY-MODEL "Authentication")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import date

import bcrypt
import pytest

from access_control.password_kdf import Password, ScryptParams
from access_control.passwords import (
    PasswordHasher,
    PersonalData,
    _bcrypt_input,
    check_strength,
    user_inputs,
)
from medchat.errors import WeakPassword
from tests.support.password_work import count_password_work

STRONG = "quokka-harbor-lantern-42"
JEANNE = PersonalData("jeanne.moreau@example.org", "Jeanne", "Moreau", date(1988, 6, 12))
FAST = ScryptParams(log2_n=10)  # production: 17, bcrypt 12 (tests/unit/test_config.py)
#: STRONG hashed by PasswordHasher(4, FAST) when the format was made (issue 18).
KNOWN_HASH = (
    b"$msb1$ln=10,r=8,p=1$5-ywm0ER0Ia3oYDNspjYig$2b$04$"
    b"ItXQvVzXc8KsZTrigLltOebNhlFbea1KX/E2.fSUe2KOxUXHxOXgq"
)


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(4, FAST)


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
    assert PasswordHasher(4, FAST)._dummy != PasswordHasher(4, FAST)._dummy


# -- the scrypt pre-hash (issue 18 item 5) ---------------------------------------------------


def _stored_parts(hashed: bytes) -> tuple[ScryptParams, bytes, bytes]:
    """What a database dump shows of a hash: the scrypt cost and salt, the bcrypt hash."""
    assert hashed.startswith(b"$msb1$")
    cost, salt, rest = hashed[len(b"$msb1$") :].split(b"$", 2)
    fields = dict(part.split(b"=") for part in cost.split(b","))
    params = ScryptParams(log2_n=int(fields[b"ln"]), r=int(fields[b"r"]), p=int(fields[b"p"]))
    return params, base64.urlsafe_b64decode(salt + b"=="), b"$" + rest


@pytest.mark.parametrize("password", [STRONG, "é" * 40, "correct horse battery staple " * 4])
def test_a_guess_against_the_bcrypt_hash_needs_the_scrypt_run(hasher, password):
    """An offline guesser with the dump cannot test a guess at bcrypt's cost alone: bcrypt
    over the password (short or pre-hashed the old way) does not match; only bcrypt over the
    HKDF of scrypt with the stored salt and cost does."""
    hashed = hasher.hash(password)
    params, salt, bcrypt_hash = _stored_parts(hashed)
    assert params == FAST
    raw = password.encode()
    old_prehash = base64.b64encode(
        hmac.new(b"medchat/password-prehash/v1", raw, hashlib.sha256).digest()
    )
    for candidate in (raw[:72], old_prehash, base64.b64encode(hashlib.sha256(raw).digest())):
        assert not bcrypt.checkpw(candidate, bcrypt_hash)
    # The stored salt and cost with scrypt: the guess is confirmed (so the above is the point).
    run = Password(password).stretched(salt, params)
    assert bcrypt.checkpw(_bcrypt_input(run), bcrypt_hash)
    # Another salt or another cost: not the stored run, no match.
    assert not bcrypt.checkpw(_bcrypt_input(Password(password).fresh(params)), bcrypt_hash)
    other_cost = ScryptParams(log2_n=11)
    assert not bcrypt.checkpw(
        _bcrypt_input(Password(password).stretched(salt, other_cost)), bcrypt_hash
    )


def test_the_hash_and_the_account_run_share_the_salt(hasher):
    typed = Password(STRONG)
    hashed = hasher.hash(typed)
    _params, salt, _bcrypt_hash = _stored_parts(hashed)
    assert typed.account is not None and typed.account.salt == salt
    checked = Password(STRONG)
    assert hasher.verify(checked, hashed)
    assert checked.account is not None and checked.account.salt == salt
    wrong = Password(STRONG + "!")
    assert not hasher.verify(wrong, hashed) and wrong.account is None


def test_an_old_bare_bcrypt_hash_still_verifies_and_asks_to_be_upgraded(hasher):
    for password in (STRONG, "correct horse battery staple " * 4):
        raw = password.encode()
        if len(raw) > 72:
            raw = base64.b64encode(
                hmac.new(b"medchat/password-prehash/v1", raw, hashlib.sha256).digest()
            )
        legacy = bcrypt.hashpw(raw, bcrypt.gensalt(4))
        assert hasher.verify(password, legacy)
        assert not hasher.verify(password + "!", legacy)
        assert hasher.needs_upgrade(legacy)
    assert not hasher.needs_upgrade(hasher.hash(STRONG))
    assert PasswordHasher(5, FAST).needs_upgrade(hasher.hash(STRONG))
    assert PasswordHasher(4, ScryptParams(log2_n=11)).needs_upgrade(hasher.hash(STRONG))


@pytest.mark.parametrize(
    "stored",
    [b"$msb1$ln=99,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$2b$04$" + b"a" * 53, b"$msb1$junk", b"junk"],
    ids=["cost-out-of-bounds", "truncated", "no-format"],
)
def test_a_malformed_hash_is_refused_after_the_usual_work(hasher, stored, monkeypatch):
    work = count_password_work(monkeypatch)
    assert hasher.verify(STRONG, stored) is False
    assert work == {"scrypt": 1, "bcrypt": 1}


def test_unknown_wrong_right_and_old_hashes_cost_one_scrypt_and_one_bcrypt(hasher, monkeypatch):
    current = hasher.hash(STRONG)
    legacy = bcrypt.hashpw(STRONG.encode(), bcrypt.gensalt(4))
    work = count_password_work(monkeypatch)
    seen = {}
    for label, password, stored in (
        ("unknown", STRONG, None),
        ("wrong", STRONG + "!", current),
        ("right", STRONG, current),
        ("old hash, wrong", STRONG + "!", legacy),
        ("old hash, right", STRONG, legacy),
    ):
        work.clear()
        hasher.verify(password, stored)
        seen[label] = dict(work)
    assert all(each == {"scrypt": 1, "bcrypt": 1} for each in seen.values()), seen
    # The upgrade after an old hash verified reuses that scrypt run: one bcrypt more.
    typed = Password(STRONG)
    work.clear()
    assert hasher.verify(typed, legacy)
    hasher.hash(typed)
    assert dict(work) == {"scrypt": 1, "bcrypt": 2}


# -- what a refusal says, the edges, the inputs made of the person's data (issue 19) -------


def test_a_short_password_is_refused_with_the_rule_it_broke():
    with pytest.raises(WeakPassword) as caught:
        check_strength("Zq8#pL2w")
    assert caught.value.message == "The password needs at least 9 characters."
    assert caught.value.details == {"password": ["At least 9 characters."], "score": 0}


def test_1024_characters_are_allowed_and_1025_refused_with_the_rule():
    strong = (STRONG + "-") * 50
    check_strength(strong[:1024])  # the edge itself (zxcvbn judges its first 100 characters)
    with pytest.raises(WeakPassword) as caught:
        check_strength(strong[:1025])
    assert caught.value.message == "The password may have at most 1024 characters."
    assert caught.value.details == {"password": ["At most 1024 characters."]}


def test_a_guessable_password_is_refused_with_zxcvbns_warning_and_suggestions():
    with pytest.raises(WeakPassword) as caught:
        check_strength("aaaaaaaaaa")
    assert caught.value.message == "The password is too easy to guess."
    assert caught.value.details == {
        "password": [
            'Repeats like "aaa" are easy to guess.',
            "Add another word or two. Uncommon words are better.",
            "Avoid repeated words and characters.",
        ],
        "score": 0,
    }


def test_a_person_with_only_a_last_name_on_file_gives_that_name_alone():
    # No joins with a missing first name, and nothing invented for the empty fields.
    assert user_inputs(PersonalData("", "", "Moreau")) == ["moreau"]
    assert user_inputs(PersonalData("", "Jeanne", "")) == ["jeanne"]


@pytest.mark.parametrize(
    ("email", "pieces"),
    [
        ("zorglub-quixote@example.org", {"zorglub", "quixote", "example", "org"}),
        ("zorglub_quixote@example.org", {"zorglub", "quixote"}),
        ("zorglub+quixote@example.org", {"zorglub", "quixote"}),
        ("zorglub quixote@example.org", {"zorglub", "quixote"}),
        ("zorglub@quixote.example", {"zorglub", "quixote.example", "quixote", "example"}),
        # three letters are a piece; two are not (too short to be worth a guess)
        ("ann.jo@example.org", {"ann", "example", "org"}),
    ],
)
def test_the_email_is_cut_at_every_separator_people_use(email, pieces):
    inputs = user_inputs(PersonalData(email, "", ""))
    assert pieces <= set(inputs)
    assert email in inputs
    assert "jo" not in inputs


@pytest.mark.parametrize(
    ("email", "password"),
    [
        # strong for a stranger, a pair of pieces of the address for anyone who has it
        ("zorglub-vantreck@example.org", "Vantreckzorglub"),
        ("zorglub_vantreck@example.org", "Vantreckzorglub"),
        ("zorglub+vantreck@example.org", "Vantreckzorglub"),
        ("zorglub vantreck@example.org", "Vantreckzorglub"),
    ],
)
def test_a_password_made_of_pieces_of_the_email_is_refused(email, password):
    check_strength(password)
    with pytest.raises(WeakPassword):
        check_strength(password, PersonalData(email, "Jeanne", "Moreau"))


def test_a_password_made_of_the_names_is_refused_for_that_person_only():
    person = PersonalData("j@example.org", "Zorglub", "Vantreck")
    check_strength("Vantreckzorglub")
    with pytest.raises(WeakPassword):
        check_strength("Vantreckzorglub", person)
    check_strength("Vantreckzorglub", PersonalData("j@example.org", "Jeanne", "Moreau"))


def test_a_stored_hash_has_the_documented_format(hasher):
    # $msb1$ln=<log2 N>,r=<r>,p=<p>$<salt, base64url without padding> then bcrypt's $2b$...
    hashed = hasher.hash(STRONG)
    shape = rb"\$msb1\$ln=10,r=8,p=1\$[A-Za-z0-9_-]{22}\$2b\$04\$[./A-Za-z0-9]{53}"
    assert re.fullmatch(shape, hashed)


def test_a_hash_made_before_verifies_the_same_password_today(hasher):
    # Made by this code (cost ln=10, bcrypt 4) and kept: the bcrypt input, its label and the
    # format may not drift, or every stored password stops verifying.
    assert hasher.verify(STRONG, KNOWN_HASH)
    assert not hasher.verify(STRONG + "!", KNOWN_HASH)


def test_the_scrypt_costs_are_read_from_the_hash(hasher):
    other = PasswordHasher(4, ScryptParams(log2_n=10, r=4, p=2))
    hashed = other.hash(STRONG)
    assert hasher.verify(STRONG, hashed)
    assert hasher.needs_upgrade(hashed)
    assert not other.needs_upgrade(hashed)


@pytest.mark.parametrize(
    "stored",
    [
        b"$msb1$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$2b$a4$" + b"a" * 53,  # cost not a number
        b"$msb1$ln=10,r=8,p=1$AAAAAAAAAAAAAAAA$2b$04$" + b"a" * 53,  # salt too short
    ],
    ids=["bcrypt-cost", "salt"],
)
def test_a_malformed_current_hash_is_refused_and_asks_to_be_replaced(hasher, stored):
    assert hasher.verify(STRONG, stored) is False
    assert hasher.needs_upgrade(stored)


def test_an_old_hash_of_exactly_72_bytes_is_bcrypt_of_the_password_itself(hasher):
    password = "p" * 60 + "quokka-42!!!"
    assert len(password.encode()) == 72
    legacy = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4))
    assert hasher.verify(password, legacy)


def test_a_stored_value_that_is_not_a_bcrypt_hash_verifies_nothing(hasher):
    assert hasher.verify(STRONG, b"$2b$04$not-a-bcrypt-hash") is False


@pytest.mark.parametrize("operation", ["hash", "verify"])
def test_every_hashing_operation_passes_the_process_password_work(operation: str) -> None:
    """The bound on password work (``access_control.password_work``) holds only if the hasher
    sends every operation through it: with the one slot and its queue taken, each is refused
    before any hashing, and with them free it runs on the work's own thread."""
    import threading

    from access_control.errors import PasswordWorkBusy
    from access_control.password_work import PasswordWork

    work = PasswordWork(1, 0)
    bounded = PasswordHasher(4, FAST, work)
    args = {"hash": (STRONG,), "verify": (STRONG, None)}[operation]
    holding, release = threading.Event(), threading.Event()

    def hold_the_slot() -> None:
        with work.reserved():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_slot)
    holder.start()
    try:
        assert holding.wait(10)
        with pytest.raises(PasswordWorkBusy):
            getattr(bounded, operation)(*args)
    finally:
        release.set()
        holder.join()
    threads: list[str] = []
    real = bcrypt.gensalt if operation != "verify" else bcrypt.checkpw
    name = "gensalt" if operation != "verify" else "checkpw"

    def spy(*a: object, **k: object) -> object:
        threads.append(threading.current_thread().name)
        return real(*a, **k)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bcrypt, name, spy)
        getattr(bounded, operation)(*args)
    assert threads == ["password-work"]
