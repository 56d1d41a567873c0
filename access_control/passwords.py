"""Passwords: a strength policy, and bcrypt hashing over an scrypt pre-hash.

SECURITY-MODEL "Authentication": at least 9 characters, zxcvbn score >= 3 with the person's
own data as user inputs (``PersonalData``: names, e-mail, birth date, and the ways people join
them: "MoreauJeanne1" and "JeanneMoreau1988" are weak for Jeanne Moreau born in 1988), bcrypt
cost 12 with a per-user salt.

Threat: a database dump guessed offline. bcrypt alone costs a guesser 4 KiB and a few
milliseconds, while the personal key beside the hash costs scrypt's 128 MiB: the hash would be
the cheap way to test a guess. So bcrypt hashes a pre-hash that needs the scrypt work: the
password is stretched with scrypt (salt and cost stored in the hash), HKDF-SHA256 with a label
of its own turns the output into 32 bytes, base64 makes them 44 characters (under bcrypt's 72
bytes, no NUL byte, nothing truncated, however long the password). The personal key is sealed
with the same scrypt run under another label (``access_control.password_kdf``), so signing in
costs one scrypt and one bcrypt, and so does every offline guess, whichever it tests.

Stored: ``$msb1$ln=<log2 N>,r=<r>,p=<p>$<salt, base64url>`` followed by the bcrypt hash
(``$2b$12$...``). Hashes made before (a bare bcrypt hash, inputs over 72 bytes pre-hashed with
HMAC-SHA256) still verify, and ``needs_upgrade`` says to replace them at the next successful
sign-in (``AuthenticationService.check_password``), as it does for a hash of another cost.

Equal work: an unknown account, a wrong password and an old-format hash each cost one scrypt
of the configured cost and one bcrypt check, so "no such user", "wrong password" and "old
hash" take the same time.

Bounded work: given the process's ``PasswordWork`` (``access_control.password_work``), each
check and hash runs whole on its pool (one slot for the scrypt and the bcrypt of one
check), and an unknown account's dummy check waits at the same gate as a real one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

import bcrypt
from zxcvbn import zxcvbn

from access_control.errors import WeakPassword
from access_control.password_kdf import SALT_SIZE, Password, ScryptParams, Stretched
from access_control.password_work import PasswordWork

MIN_LENGTH = 9
MIN_SCORE = 3
MAX_LENGTH = 1024
BCRYPT_MAX_BYTES = 72
# zxcvbn's matching grows quickly with length; a prefix this long decides strength reliably.
_ZXCVBN_PREFIX = 100
#: Hashes made before the scrypt pre-hash: inputs over 72 bytes went through this HMAC.
_LEGACY_PREHASH_KEY = b"medchat/password-prehash/v1"
#: The format marker of hashes made now, and the HKDF label of their bcrypt input.
_FORMAT = b"$msb1$"
_BCRYPT_INFO = b"medchat/password-hash/v2/bcrypt-input"
#: bcrypt's base64 alphabet: a hash is "$2b$", the cost, "$", 22 salt and 31 digest characters.
_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_BCRYPT_DIGEST_CHARS = 31

T = TypeVar("T")


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
        feedback = result["feedback"]  # always there: a warning (maybe "") and suggestions
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


def _legacy_input(password: Password) -> bytes:
    raw = password.utf8()
    if len(raw) <= BCRYPT_MAX_BYTES:
        return raw
    return base64.b64encode(hmac.new(_LEGACY_PREHASH_KEY, raw, hashlib.sha256).digest())


def _bcrypt_input(run: Stretched) -> bytes:
    """44 base64 characters from the scrypt run: what bcrypt hashes (needs the scrypt work)."""
    return base64.b64encode(run.key(_BCRYPT_INFO))


@dataclass(frozen=True)
class _Stored:
    params: ScryptParams
    salt: bytes
    bcrypt_hash: bytes

    @property
    def bcrypt_rounds(self) -> int:
        return int(self.bcrypt_hash[4:6])


def _parse(hashed: bytes) -> _Stored | None:
    """A hash of the current format, or None (an old bare bcrypt hash, or nothing valid)."""
    if not hashed.startswith(_FORMAT):
        return None
    try:
        cost, salt, rest = hashed[len(_FORMAT) :].split(b"$", 2)
        fields = dict(part.split(b"=", 1) for part in cost.split(b","))
        params = ScryptParams(log2_n=int(fields[b"ln"]), r=int(fields[b"r"]), p=int(fields[b"p"]))
        raw_salt = base64.urlsafe_b64decode(salt + b"==")
        bcrypt_hash = b"$" + rest
        int(bcrypt_hash[4:6])
    except (ValueError, KeyError):
        return None
    if len(raw_salt) != SALT_SIZE or len(bcrypt_hash) != 60:
        return None
    return _Stored(params, raw_salt, bcrypt_hash)


def _format(run: Stretched, bcrypt_hash: bytes) -> bytes:
    params = run.params
    salt = base64.urlsafe_b64encode(run.salt).rstrip(b"=")
    cost = b"ln=%d,r=%d,p=%d" % (params.log2_n, params.r, params.p)
    return _FORMAT + cost + b"$" + salt + bcrypt_hash


def _checkpw(candidate: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(candidate, hashed)
    except ValueError:  # not a bcrypt hash at all: refused like a wrong password
        return False


class PasswordHasher:
    """scrypt then bcrypt, at configured costs; tests lower them, production refuses that.

    ``work``: the process's bound on password work; None runs the work where it is called
    (a command-line tool, a test of the hashing alone). ``PasswordWorkBusy`` (503) when full.
    """

    def __init__(self, rounds: int, scrypt: ScryptParams, work: PasswordWork | None = None) -> None:
        self.rounds = rounds
        self.scrypt = scrypt
        self.work = work
        self._dummy = _dummy_hash(rounds)

    def _bounded(self, fn: Callable[..., T], password: str | Password, *args: Any) -> T:
        """``fn(password, *args)`` on the ``work`` pool; the password's later scrypt runs (a
        key sealed with another salt, opened after the check) go through the same bound."""
        password = Password.of(password)
        if self.work is not None and password.runner is None:
            password.runner = self.work.run
        if password.runner is None:
            return fn(password, *args)
        return password.runner(fn, password, *args)  # type: ignore[no-any-return]

    def hash(self, password: str | Password) -> bytes:
        """A new hash; the scrypt run it used becomes ``password.account`` (the key's salt)."""
        return self._bounded(self._hash, password)

    def _hash(self, password: Password) -> bytes:
        run = password.fresh(self.scrypt)
        hashed = _format(run, bcrypt.hashpw(_bcrypt_input(run), bcrypt.gensalt(self.rounds)))
        password.account = run
        return hashed

    def verify(self, password: str | Password, hashed: bytes | None) -> bool:
        """Check a password; with no hash (unknown account) spend the same work and fail.

        When it verifies, ``password.account`` is the run the hash is made from (an old-format
        hash has none: ``hash`` makes the replacement from the run done here, at no extra
        scrypt). The unknown account passes through the same ``work`` gate as a known one.
        """
        return self._bounded(self._verify, password, hashed)

    def _verify(self, password: Password, hashed: bytes | None) -> bool:
        stored = _parse(hashed) if hashed is not None else None
        if stored is None:
            run = password.fresh(self.scrypt)
            if hashed is not None and hashed.startswith(b"$2"):
                return _checkpw(_legacy_input(password), hashed)
            _checkpw(_bcrypt_input(run), self._dummy)
            return False
        run = password.stretched(stored.salt, stored.params)
        if not _checkpw(_bcrypt_input(run), stored.bcrypt_hash):
            return False
        password.account = run
        return True

    def needs_upgrade(self, hashed: bytes) -> bool:
        """An old-format hash, or one of other costs than configured: replace it at sign-in."""
        stored = _parse(hashed)
        return stored is None or stored.params != self.scrypt or stored.bcrypt_rounds != self.rounds


def _dummy_hash(rounds: int) -> bytes:
    """A well-formed bcrypt hash of the given cost that no password matches.

    Checking a password against it costs exactly what checking a real hash of that cost
    does (bcrypt derives from the password and the salt, then compares), yet making it costs
    nothing: a random salt and a random digest, no hashing. Every worker makes one at start,
    so hashing here would add a full bcrypt run to each worker's boot.
    """
    digest = "".join(secrets.choice(_BCRYPT_ALPHABET) for _ in range(_BCRYPT_DIGEST_CHARS))
    return bcrypt.gensalt(rounds) + digest.encode("ascii")
