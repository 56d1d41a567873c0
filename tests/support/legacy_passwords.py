"""An account as the release before the scrypt pre-hash left it (issue 18 item 5).

A bare bcrypt hash of the password (inputs up to 72 bytes as they are), and the personal key
sealed in blob version 1: AES-256-GCM under the scrypt output itself, with a salt of its own.
Built here from the literal old definitions, not through today's code, so what the tests
sign in with is what the old code wrote.
"""

from __future__ import annotations

import os

import bcrypt
from sqlalchemy import select

from access_control import crypto, password_kdf
from medchat.keys.custody import _PERSONAL_AAD
from medchat.models import Account, PersonalKey
from medchat.services.context import ServiceContext
from tests.support.accounts import Person


def as_before(runtime: ServiceContext, person: Person) -> None:
    """Rewrite the account's hash and current key blob the old way (same password, key)."""
    with runtime.database.transaction() as session:
        account = session.get(Account, person.id)
        account.password_hash = bcrypt.hashpw(person.password.encode(), bcrypt.gensalt(4))
        row = session.scalars(
            select(PersonalKey).where(
                PersonalKey.account_id == person.id, PersonalKey.retired_at.is_(None)
            )
        ).one()
        aad = crypto.associated_data(_PERSONAL_AAD, person.id, row.id)
        seed = password_kdf.open_with_password(row.private_key_ciphertext, person.password, aad=aad)
        params, salt, nonce = runtime.scrypt, os.urandom(16), os.urandom(12)
        header = bytes([1, params.log2_n, params.r, params.p]) + salt + nonce
        key = password_kdf._derive(person.password, salt, params)
        row.private_key_ciphertext = header + crypto._aesgcm_encrypt_from_parts(
            key, nonce, seed, crypto.associated_data("medchat/password-seal/v1", header, aad)
        )
