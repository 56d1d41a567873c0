"""Passwords: a strength policy and bcrypt hashing that never truncates.

SECURITY-MODEL "Authentication": at least 9 characters, zxcvbn score >= 3 with the person's
own data as user inputs (``PersonalData``: names, e-mail, birth date, and the ways people join
them: "MoreauJeanne1" and "JeanneMoreau1988" are weak for Jeanne Moreau born in 1988), bcrypt
cost 12 with a per-user salt. bcrypt reads only
72 bytes (bcrypt 5 raises beyond), so longer inputs are pre-hashed with HMAC-SHA256 and
base64-encoded (no NUL byte reaches bcrypt). Unknown accounts are checked against a dummy hash
of the same cost, so "no such user" and "wrong password" take the same time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import date

import bcrypt
from zxcvbn import zxcvbn

from medchat.errors import WeakPassword

MIN_LENGTH = 9
MIN_SCORE = 3
MAX_LENGTH = 1024
BCRYPT_MAX_BYTES = 72
# zxcvbn's matching grows quickly with length; a prefix this long decides strength reliably.
_ZXCVBN_PREFIX = 100
_PREHASH_KEY = b"medchat/password-prehash/v1"
#: bcrypt's base64 alphabet: a hash is "$2b$", the cost, "$", 22 salt and 31 digest characters.
_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_BCRYPT_DIGEST_CHARS = 31


#: How people join names or date parts in a password ("jeanne.moreau", "12/06/1988").
_SEPARATORS = (".", "-", "_", "/", " ")


@dataclass(frozen=True, repr=False)
class PersonalData:
    """What an attacker who knows the person tries first. Staff have no birth date on file."""

    email: str
    first_name: str
    last_name: str
    birth_date: date | None = None


def user_inputs(person: PersonalData) -> list[str]:
    """The one list of guesses zxcvbn gets for ``person``, most obvious first.

    zxcvbn ranks user inputs by position and matches each as a whole word, so the list holds
    the pieces (names, the e-mail's local part and domain, the birth year) and the joins a
    person makes of them (first and last name either way round, an initial and a name), and
    the birth date in the forms people type: 1988, 88, 12061988, 120688, 19880612, 0612...
    """
    first = _letters(person.first_name)
    last = _letters(person.last_name)
    names = [first, last]
    for a, b in ((first, last), (last, first)):
        if a and b:
            names += [a + b, a[:1] + b, *(a + sep + b for sep in _SEPARATORS)]
    guesses = [*names, *_input_parts(person.email)]
    if person.birth_date is not None:
        guesses += _date_forms(person.birth_date)
    return list(dict.fromkeys(guess for guess in guesses if guess))


def _letters(name: str | None) -> str:
    """A name as it is typed into a password: lower case, no spaces, hyphens or apostrophes."""
    return "".join(ch for ch in (name or "").lower() if ch.isalnum())


def _date_forms(born: date) -> list[str]:
    """A birth date as people write it into passwords, the bare forms first."""
    year, yy = f"{born.year:04d}", f"{born.year % 100:02d}"
    dd, mm = f"{born.day:02d}", f"{born.month:02d}"
    written = [
        form
        for sep in _SEPARATORS
        for form in (
            dd + sep + mm + sep + year,
            mm + sep + dd + sep + year,
            year + sep + mm + sep + dd,
        )
    ]
    bare = [
        year,
        dd + mm + year,
        mm + dd + year,
        year + mm + dd,
        dd + mm + yy,
        mm + dd + yy,
        yy + mm + dd,
        dd + mm,
        mm + dd,
        yy,
    ]
    return bare + written


def check_strength(password: str, person: PersonalData | None = None) -> None:
    """Raise ``WeakPassword`` (422) with zxcvbn's feedback unless the password is strong.

    ``person``: whose password it is (registration, enrollment, reset, change); their own
    data counts as guessed first (``user_inputs``).
    """
    if len(password) < MIN_LENGTH:
        raise WeakPassword(
            f"The password needs at least {MIN_LENGTH} characters.",
            details={"password": [f"At least {MIN_LENGTH} characters."], "score": 0},
        )
    if len(password) > MAX_LENGTH:
        raise WeakPassword(
            f"The password may have at most {MAX_LENGTH} characters.",
            details={"password": [f"At most {MAX_LENGTH} characters."]},
        )
    inputs = user_inputs(person) if person is not None else []
    prefix = password[:_ZXCVBN_PREFIX]
    result = zxcvbn(prefix, user_inputs=inputs, max_length=_ZXCVBN_PREFIX)
    if result["score"] < MIN_SCORE:
        feedback = result.get("feedback") or {}
        messages = [m for m in [feedback.get("warning"), *feedback.get("suggestions", [])] if m]
        raise WeakPassword(
            "The password is too easy to guess.",
            details={
                "password": messages or ["Choose a longer, less predictable password."],
                "score": result["score"],
            },
        )


def _input_parts(value: str) -> list[str]:
    """Feed zxcvbn the whole value and its pieces (an e-mail's local part and domain)."""
    lowered = (value or "").lower()
    pieces = {lowered}
    for separator in ("@", ".", "-", "_", "+", " "):
        for piece in lowered.replace("@", separator).split(separator):
            if len(piece) >= 3:
                pieces.add(piece)
    return sorted(pieces)


def _bcrypt_input(password: str) -> bytes:
    raw = password.encode("utf-8")
    if len(raw) <= BCRYPT_MAX_BYTES:
        return raw
    return base64.b64encode(hmac.new(_PREHASH_KEY, raw, hashlib.sha256).digest())


class PasswordHasher:
    """bcrypt at a configured cost; tests lower it, production refuses anything below 12."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self._dummy = _dummy_hash(rounds)

    def hash(self, password: str) -> bytes:
        return bcrypt.hashpw(_bcrypt_input(password), bcrypt.gensalt(self.rounds))

    def verify(self, password: str, hashed: bytes | None) -> bool:
        """Check a password; with no hash (unknown account) spend the same time and fail."""
        candidate = _bcrypt_input(password)
        if hashed is None:
            bcrypt.checkpw(candidate, self._dummy)
            return False
        return bcrypt.checkpw(candidate, hashed)

    def burn(self, password: str) -> None:
        """Spend one hash's time (registration of a taken address must not be faster)."""
        bcrypt.hashpw(_bcrypt_input(password), bcrypt.gensalt(self.rounds))


def _dummy_hash(rounds: int) -> bytes:
    """A well-formed bcrypt hash of the given cost that no password matches.

    Checking a password against it costs exactly what checking a real hash of that cost
    does (bcrypt derives from the password and the salt, then compares), yet making it costs
    nothing: a random salt and a random digest, no hashing. Every worker makes one at start,
    so hashing here would add a full bcrypt run to each worker's boot.
    """
    digest = "".join(secrets.choice(_BCRYPT_ALPHABET) for _ in range(_BCRYPT_DIGEST_CHARS))
    return bcrypt.gensalt(rounds) + digest.encode("ascii")
