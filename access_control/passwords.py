"""Passwords: a strength policy and bcrypt hashing that never truncates.

SECURITY-MODEL "Authentication": at least 9 characters, zxcvbn score >= 3 with the person's
own names and e-mail as user inputs, bcrypt cost 12 with a per-user salt. bcrypt reads only
72 bytes (bcrypt 5 raises beyond), so longer inputs are pre-hashed with HMAC-SHA256 and
base64-encoded (no NUL byte reaches bcrypt). Unknown accounts are checked against a dummy hash
of the same cost, so "no such user" and "wrong password" take the same time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

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


def check_strength(password: str, user_inputs: Sequence[str] = ()) -> None:
    """Raise ``WeakPassword`` (422) with zxcvbn's feedback unless the password is strong."""
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
    inputs = [part for value in user_inputs if value for part in _input_parts(value)]
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
    lowered = value.lower()
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
