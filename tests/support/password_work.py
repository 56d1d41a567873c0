"""Counting the expensive password work: scrypt runs and bcrypt operations.

Equal work is how the tests show equal timing ("no such user", "wrong password", "old hash"
and a taken address cost what the other branch costs), without measuring time.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import bcrypt

from access_control import password_kdf


def count_password_work(monkeypatch: Any) -> Counter[str]:
    """Count scrypt runs and bcrypt operations from now on in this test."""
    work: Counter[str] = Counter()
    real_derive, real_check, real_hash = password_kdf._derive, bcrypt.checkpw, bcrypt.hashpw

    def derive(*args: Any) -> Any:
        work["scrypt"] += 1
        return real_derive(*args)

    def check(*args: Any) -> Any:
        work["bcrypt"] += 1
        return real_check(*args)

    def hashpw(*args: Any) -> Any:
        work["bcrypt"] += 1
        return real_hash(*args)

    monkeypatch.setattr(password_kdf, "_derive", derive)
    monkeypatch.setattr(bcrypt, "checkpw", check)
    monkeypatch.setattr(bcrypt, "hashpw", hashpw)
    return work
