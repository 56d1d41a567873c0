"""TOTP second factor (RFC 6238, pyotp) and single-use recovery codes.

A code is accepted once: the matched time step is written with a conditional UPDATE
(``totp_last_step < step``) so two processes racing with the same code cannot both win, and
an earlier step is refused after a later one was used. One step of clock drift is allowed
either way. Recovery codes are 80-bit random values stored as SHA-256 hashes, each usable once.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

import pyotp
import segno
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from access_control import crypto
from medchat.db import rows_changed
from medchat.models import Account, RecoveryCode

ISSUER = "medchat"
STEP_SECONDS = 30
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def generate_secret() -> str:
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, account_label: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account_label, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The provisioning URI as an inline SVG QR code (no image files, no external service)."""
    return segno.make(uri, error="m").svg_inline(scale=4, border=2)


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code equals ``code`` (within the drift window), or None."""
    code = code.strip().replace(" ", "")
    # isascii: str.isdigit() is true of "١٢٣٤٥٦" too, and compare_digest raises on non-ASCII.
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def consume_step(session: Session, account_id: uuid.UUID, step: int) -> bool:
    """Record ``step`` as used; False if it (or a later step) was used already (replay)."""
    result = session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            or_(Account.totp_last_step.is_(None), Account.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    return rows_changed(result) == 1


def _normalise_recovery_code(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


def new_recovery_codes(session: Session, account_id: uuid.UUID) -> list[str]:
    """Replace the account's recovery codes with fresh ones; return them once, in clear."""
    for old in session.scalars(select(RecoveryCode).where(RecoveryCode.account_id == account_id)):
        session.delete(old)
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
        session.add(RecoveryCode(account_id=account_id, code_hash=crypto.token_hash(raw)))
    session.flush()
    return codes


def consume_recovery_code(
    session: Session, account_id: uuid.UUID, code: str, now: datetime
) -> bool:
    """Spend a recovery code; False when it is unknown or was used before.

    The row is loaded as an object first, so its row tag is checked (a code row planted or
    moved to another account through SQL is refused and audited, ``row_integrity``); only then
    is it spent, by its id and on condition it is still unused (a used code is refused here,
    and of two requests racing with one code one wins). A bulk UPDATE matching on the code's
    hash would have trusted a row nobody checked.
    """
    row = session.scalars(
        select(RecoveryCode).where(
            RecoveryCode.account_id == account_id,
            RecoveryCode.code_hash == crypto.token_hash(_normalise_recovery_code(code)),
        )
    ).first()
    if row is None:
        return False
    result = session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.id == row.id, RecoveryCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return rows_changed(result) == 1


def verify_second_factor(
    session: Session, account: Account, secret: str, code: str, now: datetime
) -> bool:
    """Accept a fresh TOTP code or an unused recovery code, exactly once."""
    step = matching_step(secret, code, now)
    if step is not None:
        return consume_step(session, account.id, step)
    if len(_normalise_recovery_code(code)) == 16:
        return consume_recovery_code(session, account.id, code, now)
    return False
